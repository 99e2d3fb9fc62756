/* Engage: the target-group rule builder of the admin change form.
 *
 * It mounts on the rules textarea (`data-rule-builder`), keeps it below under "Rules as JSON"
 * and rewrites it on every edit, so saving posts the tree and Django validates it: the server's
 * errors come back as form errors naming their path, and are also shown on the conditions they
 * name. The grammar is docs/target-groups.md. The fields come from the admin's `fields/` view
 * (campaigns.rules.catalog), the audience from `preview/`; both URLs are in the page's
 * #rule-builder-config. Plain DOM, no build step.
 */
(function () {
  "use strict";

  const VALUELESS = new Set(["empty", "not_empty"]);
  const CONDITION_KEYS = new Set(["field", "op", "value", "days"]);
  const GROUP_LABELS = {and: "all of these (AND)", or: "any of these (OR)"};
  const PART_LABELS = {field: "Field", op: "Operator", value: "Value", days: "Days"};
  const MAX_DAYS = 36600;
  const numberFormat = new Intl.NumberFormat();

  // --- the model: groups and conditions, each with an id for its DOM and its errors ---------

  let nextId = 1;

  function makeGroup(op, children) {
    return {type: "group", id: nextId++, op: op, not: false, children: children};
  }

  function makeCondition(raw) {
    return {type: "condition", id: nextId++, not: false, field: raw.field ?? "",
            op: raw.op ?? "", value: raw.value, days: raw.days ?? null};
  }

  class Unrepresentable extends Error {}

  function isObject(value) {
    return value !== null && typeof value === "object" && !Array.isArray(value);
  }

  function parseNode(raw, path) {
    if (!isObject(raw)) {
      throw new Unrepresentable(`${path} is neither a group nor a condition`);
    }
    const keys = Object.keys(raw);
    if (keys.length === 1 && keys[0] === "not") {
      const node = parseNode(raw.not, `${path}.not`);
      node.not = !node.not;
      return node;
    }
    if (keys.length === 1 && (keys[0] === "and" || keys[0] === "or")) {
      const op = keys[0];
      if (!Array.isArray(raw[op])) throw new Unrepresentable(`${path}.${op} is not a list`);
      return makeGroup(op, raw[op].map((child, i) => parseNode(child, `${path}.${op}[${i}]`)));
    }
    if (keys.includes("field") && keys.every((key) => CONDITION_KEYS.has(key))) {
      return makeCondition(raw);
    }
    throw new Unrepresentable(`${path} is neither a group nor a condition`);
  }

  /* The root is always a group in the builder. `form` remembers how the tree was written
   * (a list, a group, or a lone node), so an edit keeps that shape and the server's paths
   * (`rules[1]`, `rules.and[1]`, `rules.value`) point at the same nodes. */
  function parseRoot(tree) {
    if (tree === null || tree === undefined) return {root: makeGroup("and", []), form: "dict"};
    if (Array.isArray(tree)) {
      return {root: makeGroup("and", tree.map((n, i) => parseNode(n, `rules[${i}]`))),
              form: "list"};
    }
    if (isObject(tree) && Object.keys(tree).length === 0) {
      return {root: makeGroup("and", []), form: "dict"};
    }
    const node = parseNode(tree, "rules");
    if (node.type === "group" && !node.not) return {root: node, form: "dict"};
    return {root: makeGroup("and", [node]), form: "single"};
  }

  function conditionJson(node) {
    const json = {field: node.field, op: node.op};
    if (node.value !== undefined) json.value = node.value;
    if (node.days !== null && node.days !== undefined && node.days !== "") json.days = node.days;
    return json;
  }

  /* The tree as JSON, and every node's path in it (a negated node answers to both `p` and
   * `p.not`, since errors inside it are reported under `p.not`). */
  function serialize(root, form) {
    const paths = new Map([["rules", root]]);
    root.path = "rules";

    function write(node, path) {
      node.path = path;
      paths.set(path, node);
      const inner = node.not ? `${path}.not` : path;
      if (node.not) paths.set(inner, node);
      const json = node.type === "group"
        ? {[node.op]: node.children.map((child, i) => write(child, `${inner}.${node.op}[${i}]`))}
        : conditionJson(node);
      return node.not ? {not: json} : json;
    }

    const children = root.children;
    let tree;
    if (!children.length) tree = form === "list" ? [] : {};
    else if (form === "list" && root.op === "and") {
      tree = children.map((child, i) => write(child, `rules[${i}]`));
    } else if (form === "single" && root.op === "and" && children.length === 1) {
      tree = write(children[0], "rules");
    } else {
      tree = {[root.op]: children.map((child, i) => write(child, `rules.${root.op}[${i}]`))};
    }
    return {tree: tree, paths: paths};
  }

  /* The node an error path names, and what part of it (`value`, `days`…). */
  function locate(path, paths, root) {
    let prefix = path;
    let rest = "";
    for (;;) {
      if (paths.has(prefix)) return {node: paths.get(prefix), rest: rest};
      const match = prefix.match(/^(.*)(\.[A-Za-z_]+|\[\d+\])$/);
      if (!match) return {node: root, rest: path};
      prefix = match[1];
      rest = match[2] + rest;
    }
  }

  // --- DOM helpers ---------------------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") node.className = value;
      else if (name === "text") node.textContent = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child !== null && child !== undefined) node.append(child);
    }
    return node;
  }

  function button(text, attrs) {
    return el("button", {type: "button", class: "button", ...attrs}, text);
  }

  function asNumber(input) {
    return input.value === "" ? null : Number(input.value);
  }

  function shown(value) {
    return value === null || value === undefined ? "" : String(value);
  }

  // ISO date, or date and time (what <input type=date> and <input type=time> can show).
  const MOMENT = /^(\d{4}-\d{2}-\d{2})(?:[T ](\d{2}:\d{2}(?::\d{2})?))?$/;

  // --- the builder ---------------------------------------------------------------------------

  class RuleBuilder {
    constructor(textarea, config) {
      this.textarea = textarea;
      this.config = config;
      this.fields = new Map();
      this.families = new Map();
      this.references = {};
      this.root = null;
      this.form = "dict";
      this.paths = new Map();
      this.errors = new Map(); // node id -> messages, from the last preview or save
      this.focusId = null;
      this.broken = null;
    }

    async start() {
      this.mount();
      this.setStatus("Loading the fields…");
      try {
        const response = await fetch(this.config.fieldsUrl, {
          credentials: "same-origin", headers: {Accept: "application/json"}});
        if (!response.ok) throw new Error(`the server answered ${response.status}`);
        const data = await response.json();
        for (const field of data.fields) {
          this.fields.set(field.key, field);
          if (!this.families.has(field.family)) this.families.set(field.family, []);
          this.families.get(field.family).push(field);
        }
        this.references = data.references || {};
      } catch (error) {
        this.setStatus(`The fields could not be loaded (${error.message}): edit the rules as ` +
                       "JSON below.");
        this.json.open = true;
        return;
      }
      this.setStatus("");
      this.load(this.textarea.value);
      this.takeFormErrors();
      this.render();
      this.container.dataset.ready = "";
    }

    mount() {
      const row = this.textarea.closest(".form-row") || this.textarea.parentElement;
      const label = row.querySelector(`label[for="${this.textarea.id}"]`);
      if (label) {
        label.id = `${this.textarea.id}_label`;
        label.removeAttribute("for");
      }
      this.status = el("p", {class: "rb-status", role: "status"});
      this.tree = el("div", {class: "rb-tree"});
      this.previewButton = button("Preview audience", {
        class: "button rb-preview-button", onclick: () => this.preview()});
      this.result = el("div", {class: "rb-preview-result", "aria-live": "polite"});
      this.json = el("details", {class: "rb-json"}, el("summary", {}, "Rules as JSON"));
      this.container = el(
        "div", {class: "rule-builder", role: "group",
                "aria-labelledby": label ? label.id : null},
        this.status, this.tree,
        el("div", {class: "rb-preview"}, this.previewButton, this.result),
        this.json);
      this.textarea.replaceWith(this.container);
      this.textarea.setAttribute("aria-label", "Rules as JSON");
      this.json.append(this.textarea);
      this.textarea.addEventListener("change", () => {
        this.errors.clear();
        this.load(this.textarea.value);
        this.render();
      });
      // Enter in a builder input previews instead of saving the whole form by surprise.
      this.tree.addEventListener("keydown", (event) => {
        if (event.key === "Enter" && event.target.matches("input")) {
          event.preventDefault();
          this.preview();
        }
      });
    }

    setStatus(text) {
      this.status.textContent = text;
      this.status.hidden = !text;
    }

    load(text) {
      this.broken = null;
      let tree;
      try {
        tree = text.trim() === "" ? {} : JSON.parse(text);
      } catch (error) {
        this.broken = `the JSON is not valid (${error.message})`;
        return;
      }
      try {
        ({root: this.root, form: this.form} = parseRoot(tree));
      } catch (error) {
        if (!(error instanceof Unrepresentable)) throw error;
        this.broken = error.message;
      }
    }

    /* Django renders the rules' errors as "path: message" above the field; mark the nodes. */
    takeFormErrors() {
      if (this.broken) return;
      const row = this.container.closest(".form-row");
      const items = row ? row.querySelectorAll("ul.errorlist li") : [];
      const errors = {};
      for (const item of items) {
        const match = item.textContent.match(/^(rules[^\s:]*): ([\s\S]+)$/);
        const path = match ? match[1] : "rules";
        (errors[path] = errors[path] || []).push(match ? match[2] : item.textContent);
      }
      this.paths = serialize(this.root, this.form).paths;
      this.setErrors(errors);
    }

    setErrors(errors) {
      this.errors.clear();
      for (const [path, messages] of Object.entries(errors)) {
        const {node, rest} = locate(path, this.paths, this.root);
        const part = PART_LABELS[rest.replace(/^\./, "")];
        const list = this.errors.get(node.id) || [];
        for (const message of messages) {
          // A group's own errors come as `.and` / `.or`: the message says enough.
          const where = part || (/^\.(and|or|not)$/.test(rest) ? "" : rest);
          list.push(where ? `${where}: ${message}` : message);
        }
        this.errors.set(node.id, list);
      }
    }

    /* Write the tree into the textarea; `structural` edits redraw the tree (paths move). */
    changed(node, structural) {
      if (structural) this.errors.clear();
      else if (node && this.errors.delete(node.id)) {
        const list = this.tree.querySelector(`#rb-${node.id}-errors`);
        if (list) list.replaceChildren();
      }
      const {tree, paths} = serialize(this.root, this.form);
      this.paths = paths;
      this.textarea.value = JSON.stringify(tree, null, 2);
      if (this.result.childElementCount && !this.result.querySelector(".rb-stale")) {
        this.result.prepend(el("p", {class: "rb-stale"},
                               "The rules changed since this preview."));
      }
      if (structural) this.render();
    }

    render() {
      const active = document.activeElement && this.tree.contains(document.activeElement)
        ? document.activeElement.id : null;
      if (this.broken) {
        this.tree.replaceChildren(el(
          "div", {class: "rb-broken"},
          el("p", {}, `These rules cannot be shown in the builder: ${this.broken}. Correct ` +
                      "the JSON below, or start over."),
          button("Start over with no rules", {onclick: () => this.startOver()})));
        this.json.open = true;
        this.previewButton.disabled = true;
        return;
      }
      this.previewButton.disabled = false;
      this.paths = serialize(this.root, this.form).paths;
      this.tree.replaceChildren(this.renderGroup(this.root, null));
      const focus = this.focusId || active;
      this.focusId = null;
      if (focus) {
        const target = document.getElementById(focus);
        if (target) target.focus();
      }
    }

    startOver() {
      this.root = makeGroup("and", []);
      this.form = "dict";
      this.broken = null;
      this.changed(null, true);
    }

    // --- groups ------------------------------------------------------------------------------

    renderGroup(node, parent) {
      const isRoot = parent === null;
      const opSelect = el("select", {id: `rb-${node.id}-match`, onchange: (event) => {
        node.op = event.target.value;
        this.changed(node, true);
      }});
      for (const op of ["and", "or"]) {
        opSelect.append(el("option", {value: op, selected: node.op === op}, GROUP_LABELS[op]));
      }
      const head = el(
        "div", {class: "rb-group-head"},
        isRoot ? null : this.notToggle(node),
        el("label", {class: "rb-inline", for: opSelect.id},
           isRoot ? "Members matching " : "Match "),
        opSelect,
        isRoot ? null : button("Remove group", {
          class: "button rb-remove", "aria-label": "Remove this group",
          onclick: () => this.remove(node, parent)}));
      const list = el("ul", {class: "rb-children", "data-op": node.op});
      for (const child of node.children) {
        list.append(child.type === "group" ? this.renderGroup(child, node)
                                           : this.renderCondition(child, node));
      }
      const empty = node.children.length ? null : el(
        "p", {class: "rb-empty"},
        isRoot ? "No conditions: every member is selected."
               : "A group needs at least one condition: add one, or remove the group.");
      const actions = el(
        "div", {class: "rb-group-actions"},
        button("Add condition", {id: `rb-${node.id}-add`, class: "button rb-add-condition",
                                 onclick: () => this.add(node, makeCondition({}))}),
        button("Add group", {class: "button rb-add-group", onclick: () => {
          // A nested group of the same kind adds nothing, so it starts as the other one.
          this.add(node, makeGroup(node.op === "and" ? "or" : "and", [makeCondition({})]));
        }}));
      const attrs = {class: `rb-node rb-group${node.not ? " rb-negated" : ""}${isRoot
                       ? " rb-root" : ""}`,
                     "data-path": node.path, "data-op": node.op};
      return el(isRoot ? "div" : "li", attrs, head, list, empty, actions,
                this.errorList(node));
    }

    add(group, node) {
      group.children.push(node);
      const first = node.type === "group" ? node.children[0] : node;
      this.focusId = `rb-${first.id}-field`;
      this.changed(group, true);
    }

    remove(node, parent) {
      parent.children.splice(parent.children.indexOf(node), 1);
      this.focusId = `rb-${parent.id}-add`;
      this.changed(parent, true);
    }

    notToggle(node) {
      const id = `rb-${node.id}-not`;
      return el("span", {class: "rb-not"},
                el("input", {type: "checkbox", id: id, checked: node.not, onchange: (event) => {
                  node.not = event.target.checked;
                  this.changed(node, true);
                }}),
                el("label", {for: id, title: "Select the members who do not match"}, "NOT"));
    }

    errorList(node) {
      const list = el("ul", {class: "rb-errors errorlist", id: `rb-${node.id}-errors`});
      for (const message of this.errors.get(node.id) || []) list.append(el("li", {}, message));
      return list;
    }

    // --- conditions --------------------------------------------------------------------------

    /* A condition is a row of slots; picking a field refills the slots after the field's
     * select, picking an operator the value's, so the select in use is never replaced (with
     * the keyboard, each arrow key is a change). */
    renderCondition(node, parent) {
      const slots = {op: el("span", {class: "rb-slot"}), value: el("span", {class: "rb-slot"}),
                     days: el("span", {class: "rb-slot"}), help: el("div", {class: "rb-slot"})};
      const field = this.fieldSelect(node, slots);
      this.fillField(node, field, slots);
      const row = el("div", {class: "rb-row"}, this.notToggle(node), field, slots.op,
                     slots.value, slots.days);
      return el("li", {class: `rb-node rb-condition${node.not ? " rb-negated" : ""}`,
                       "data-path": node.path},
                el("div", {class: "rb-line"}, row, button("Remove", {
                  class: "button rb-remove", "aria-label": "Remove this condition",
                  onclick: () => this.remove(node, parent)})),
                slots.help, this.errorList(node));
    }

    fillField(node, field, slots) {
      const spec = this.fields.get(node.field);
      const help = spec && spec.help ? `rb-${node.id}-help` : null;
      if (help) field.setAttribute("aria-describedby", help);
      else field.removeAttribute("aria-describedby");
      slots.op.replaceChildren(...(node.field ? [this.opSelect(node, spec, slots, help)] : []));
      this.fillValue(node, spec, slots, help);
      slots.days.replaceChildren(...(spec && spec.windowed ? [this.daysInput(node)] : []));
      slots.help.replaceChildren(...(help ? [el("p", {class: "rb-help", id: help}, spec.help)]
                                          : []));
    }

    fillValue(node, spec, slots, help) {
      const refill = (focusId) => {
        this.fillValue(node, spec, slots, help);
        const target = document.getElementById(focusId);
        if (target) target.focus();
      };
      const editor = node.op ? this.valueEditor(node, spec, help, refill) : null;
      slots.value.replaceChildren(...(editor ? [editor] : []));
    }

    fieldSelect(node, slots) {
      const select = el("select", {id: `rb-${node.id}-field`, "aria-label": "Field",
                                   onchange: (event) => {
        const spec = this.fields.get(event.target.value);
        node.field = event.target.value;
        node.op = spec ? spec.ops[0].key : "";
        node.value = this.initialValue(spec, node.op);
        node.days = null;
        this.fillField(node, select, slots);
        this.changed(node, false);
      }});
      select.append(el("option", {value: "", selected: !node.field}, "Choose a field…"));
      if (node.field && !this.fields.has(node.field)) {
        select.append(el("option", {value: node.field, selected: true},
                         `${node.field} (unknown field)`));
      }
      for (const [family, fields] of this.families) {
        const group = el("optgroup", {label: family});
        for (const field of fields) {
          group.append(el("option", {value: field.key, selected: field.key === node.field},
                          field.label));
        }
        select.append(group);
      }
      return select;
    }

    opSelect(node, spec, slots, help) {
      const select = el("select", {id: `rb-${node.id}-op`, "aria-label": "Operator",
                                   onchange: (event) => {
        const before = this.editorKind(spec, node.op);
        node.op = event.target.value;
        if (this.editorKind(spec, node.op) !== before) {
          node.value = this.initialValue(spec, node.op, node.value);
        }
        this.fillValue(node, spec, slots, help);
        this.changed(node, false);
      }});
      const ops = spec ? spec.ops : [];
      if (!ops.some((op) => op.key === node.op)) {
        select.append(el("option", {value: node.op, selected: true},
                         node.op ? `${node.op} (not for this field)` : "Choose…"));
      }
      for (const op of ops) {
        select.append(el("option", {value: op.key, selected: op.key === node.op}, op.label));
      }
      return select;
    }

    daysInput(node) {
      const id = `rb-${node.id}-days`;
      return el("span", {class: "rb-days"},
                el("label", {for: id}, "in the last"),
                el("input", {type: "number", id: id, min: 1, max: MAX_DAYS, step: 1,
                             class: "rb-number", placeholder: "all time",
                             value: shown(node.days), oninput: (event) => {
                  node.days = asNumber(event.target);
                  this.changed(node, false);
                }}),
                el("span", {}, "days"));
    }

    /* Which input a value takes: by operator first (they fix the shape), then by kind. */
    editorKind(spec, op) {
      if (!spec || !op) return spec ? null : "json";
      if (VALUELESS.has(op)) return null;
      const choices = spec.choices && spec.choices.length;
      switch (op) {
        case "in_last_days": case "more_than_days_ago": case "in_next_days": return "count";
        case "any": case "none": return "lines";
        case "mailing": case "campaign": case "member_of": case "not_member_of": return "id";
        case "within_km": return "place";
        case "reachable": return "select";
        case "in": return choices ? "checks" : "lines";
        case "range":
          return {number: "range", integer: "range", years: "range", date: "range",
                  moment: "momentRange"}[spec.kind] || "json";
        case "eq": case "contains": case "starts_with":
          if (op === "eq" && choices) return "select";
          return {text: "text", choice: "text", number: "number", integer: "number",
                  years: "number", days: "number", date: "date", moment: "moment",
                  boolean: "boolean"}[spec.kind] || "json";
        default: return "json";
      }
    }

    initialValue(spec, op, previous) {
      const kind = this.editorKind(spec, op);
      if (kind === "lines" || kind === "checks") {
        return typeof previous === "string" && previous ? [previous] : [];
      }
      if (kind === "range" || kind === "momentRange") return [null, null];
      if (kind === "place") return {lat: null, lon: null, km: null};
      if ((kind === "text" || kind === "select") && Array.isArray(previous) && previous.length) {
        return previous[0];
      }
      return undefined;
    }

    valueEditor(node, spec, help, refill) {
      let kind = this.editorKind(spec, node.op);
      if (kind === null) return null;
      if (kind === "momentRange" && !this.fitsMoments(node.value)) kind = "json";
      const set = (value) => {
        node.value = value;
        this.changed(node, false);
      };
      const id = `rb-${node.id}-value`;
      const described = help || null;
      const integer = spec && ["integer", "years", "days"].includes(spec.kind);
      const numberAttrs = {type: "number", class: "rb-number", step: integer ? 1 : "any"};
      if (spec && spec.kind === "years") Object.assign(numberAttrs, {min: 0, max: 150});
      const box = el("span", {class: `rb-value rb-value-${kind}`});

      switch (kind) {
        case "text":
          box.append(el("input", {type: "text", id: id, "aria-label": "Value",
                                  "aria-describedby": described, value: shown(node.value),
                                  oninput: (event) => set(event.target.value)}));
          break;
        case "lines": {
          const what = {bought_product: "SKUs", bought_category: "categories"}[node.field] ||
            "values";
          box.append(el("textarea", {
            id: id, rows: 3, cols: 24, "aria-label": `Value: ${what}, one per line`,
            "aria-describedby": described, placeholder: `${what}, one per line`,
            oninput: (event) => set(event.target.value.split("\n").map((line) => line.trim())
                                      .filter(Boolean))},
            Array.isArray(node.value) ? node.value.join("\n") : shown(node.value)));
          break;
        }
        case "select": {
          const select = el("select", {id: id, "aria-label": "Value",
                                       "aria-describedby": described,
                                       onchange: (event) => set(event.target.value || undefined)});
          select.append(el("option", {value: ""}, "Choose…"));
          const choices = spec.choices || [];
          if (node.value !== undefined && !choices.some((c) => c.value === node.value)) {
            select.append(el("option", {value: shown(node.value), selected: true},
                             `${shown(node.value)} (unknown)`));
          }
          for (const choice of choices) {
            select.append(el("option", {value: choice.value,
                                        selected: choice.value === node.value}, choice.label));
          }
          box.append(select);
          break;
        }
        case "checks": {
          const chosen = Array.isArray(node.value) ? node.value.map(String) : [];
          const choices = [...spec.choices];
          for (const value of chosen) {
            if (!choices.some((c) => c.value === value)) {
              choices.push({value: value, label: `${value} (unknown)`});
            }
          }
          const set_ = el("fieldset", {class: "rb-checks", id: id});
          set_.append(el("legend", {class: "rb-visually-hidden"}, "Values"));
          choices.forEach((choice, i) => {
            const checkId = `${id}-${i}`;
            set_.append(el("span", {class: "rb-check"},
              el("input", {type: "checkbox", id: checkId, value: choice.value,
                           checked: chosen.includes(choice.value), onchange: () => set(
                  [...set_.querySelectorAll("input:checked")].map((input) => input.value))}),
              el("label", {for: checkId}, choice.label)));
          });
          box.append(set_);
          break;
        }
        case "number":
          box.append(el("input", {...numberAttrs, id: id, "aria-label": "Value",
                                  "aria-describedby": described, value: shown(node.value),
                                  oninput: (event) => set(asNumber(event.target))}));
          break;
        case "count":
          box.append(el("input", {type: "number", class: "rb-number", step: 1, min: 0,
                                  max: node.op === "in_next_days" ? 366 : MAX_DAYS, id: id,
                                  "aria-label": "Number of days",
                                  "aria-describedby": described, value: shown(node.value),
                                  oninput: (event) => set(asNumber(event.target))}),
                     el("span", {}, " days"));
          break;
        case "range": {
          const date = spec.kind === "date";
          const attrs = date ? {type: "date"} : numberAttrs;
          const ends = Array.isArray(node.value) ? node.value : [null, null];
          const inputs = ["from", "to"].map((word, i) => el("input", {
            ...attrs, id: `${id}-${i ? "high" : "low"}`, value: shown(ends[i]),
            "aria-describedby": `${id}-hint`, oninput: () => set(inputs.map(
              (input) => date ? input.value || null : asNumber(input)))}));
          box.append(el("label", {for: inputs[0].id}, "from"), inputs[0],
                     el("label", {for: inputs[1].id}, "to"), inputs[1],
                     el("span", {class: "rb-hint", id: `${id}-hint`},
                        "both included; leave one empty for no limit"));
          break;
        }
        case "date":
          box.append(el("input", {type: "date", id: id, "aria-label": "Value",
                                  "aria-describedby": described, value: shown(node.value),
                                  oninput: (event) => set(event.target.value || null)}));
          break;
        case "moment":
        case "momentRange": {
          const single = kind === "moment";
          const ends = single ? [node.value] : Array.isArray(node.value) ? node.value
                                                                        : [null, null];
          const pairs = (single ? ["on"] : ["from", "to"]).map((word, i) => {
            const match = typeof ends[i] === "string" ? ends[i].match(MOMENT) : null;
            const suffix = single ? "" : i ? "-high" : "-low";
            const day = el("input", {type: "date", id: `${id}${suffix}`,
                                     value: match ? match[1] : "", oninput: () => update()});
            const time = el("input", {type: "time", id: `${id}${suffix}-time`,
                                      step: match && match[2] && match[2].length > 5 ? 1 : null,
                                      value: match && match[2] ? match[2] : "",
                                      "aria-label": `${word}: time (optional)`,
                                      oninput: () => update()});
            return {word: word, day: day, time: time};
          });
          const update = () => {
            const values = pairs.map(({day, time}) => day.value
              ? (time.value ? `${day.value}T${time.value}` : day.value) : null);
            set(single ? values[0] : values);
          };
          for (const {word, day, time} of pairs) {
            box.append(el("label", {for: day.id}, word), day, time);
          }
          box.append(el("span", {class: "rb-hint"},
                        single ? "" : "time optional; a date as the end covers the whole day"));
          break;
        }
        case "boolean": {
          const select = el("select", {id: id, "aria-label": "Value", onchange: (event) => set(
            event.target.value === "" ? undefined : event.target.value === "true")});
          select.append(el("option", {value: ""}, "Choose…"),
                        el("option", {value: "true", selected: node.value === true}, "yes"),
                        el("option", {value: "false", selected: node.value === false}, "no"));
          box.append(select);
          break;
        }
        case "place":
          box.append(this.placeEditor(node, id, set, refill));
          break;
        case "id": {
          const references = this.references[node.op] || this.references[node.field] ||
            this.references[spec.kind] || [];
          const listId = `${id}-suggestions`;
          const name = el("span", {class: "rb-reference", "aria-live": "polite"});
          const named = (value) => {
            const found = references.find((ref) => ref.value === value);
            name.textContent = found ? found.label : "";
          };
          const what = {mailing: "Mailing", campaign: "Campaign", target_group: "Target group",
                        static_list: "Static list"}[node.op] ||
            {target_group: "Target group", static_list: "Static list"}[node.field] || "";
          box.append(el("label", {for: id}, `${what} id`),
                     el("input", {type: "number", class: "rb-number", id: id, min: 1, step: 1,
                                  list: listId, value: shown(node.value),
                                  "aria-describedby": described, oninput: (event) => {
                       const value = asNumber(event.target);
                       named(value);
                       set(value);
                     }}),
                     el("datalist", {id: listId}, ...references.map(
                       (ref) => el("option", {value: ref.value}, ref.label))),
                     name);
          named(node.value);
          break;
        }
        default: {
          const input = el("input", {
            type: "text", id: id, class: "rb-json-value", "aria-label": "Value (JSON)",
            "aria-describedby": described,
            value: node.value === undefined ? "" : JSON.stringify(node.value),
            oninput: (event) => {
              const text = event.target.value;
              let value;
              try {
                value = text === "" ? undefined : JSON.parse(text);
                event.target.removeAttribute("aria-invalid");
              } catch {
                value = text;
                event.target.setAttribute("aria-invalid", "true");
              }
              set(value);
            }});
          box.append(input, el("span", {class: "rb-hint"}, "as JSON"));
        }
      }
      return box;
    }

    fitsMoments(value) {
      if (!Array.isArray(value) || value.length !== 2) return value === undefined;
      return value.every((end) => end === null || (typeof end === "string" && MOMENT.test(end)));
    }

    placeEditor(node, id, set, refill) {
      const value = isObject(node.value) ? node.value : {};
      const store = "store" in value;
      const box = el("span", {class: "rb-place"});
      const mode = el("select", {id: `${id}-mode`, "aria-label": "Around",
                                 onchange: (event) => {
        node.value = event.target.value === "store" ? {store: "", km: value.km ?? null}
                                                     : {lat: null, lon: null, km: value.km ?? null};
        refill(mode.id);
        this.changed(node, false);
      }});
      mode.append(el("option", {value: "point", selected: !store}, "a point"),
                  el("option", {value: "store", selected: store}, "a store"));
      const number = (key, label, attrs) => {
        const input = el("input", {type: "number", class: "rb-number", step: "any",
                                   id: `${id}-${key}`, value: shown(value[key]), ...attrs,
                                   oninput: () => update()});
        box.append(el("label", {for: input.id}, label), input);
        return input;
      };
      const inputs = {};
      box.append(mode);
      if (store) {
        const listId = `${id}-stores`;
        inputs.store = el("input", {type: "text", id: `${id}-store`, list: listId,
                                    class: "rb-store", value: shown(value.store),
                                    oninput: () => update()});
        box.append(el("label", {for: inputs.store.id}, "code"), inputs.store,
                   el("datalist", {id: listId}, ...(this.references.store || []).map(
                     (ref) => el("option", {value: ref.value}, ref.label))));
      } else {
        inputs.lat = number("lat", "lat", {min: -90, max: 90});
        inputs.lon = number("lon", "lon", {min: -180, max: 180});
      }
      inputs.km = number("km", "within km", {min: 0, max: 20000});
      const update = () => set(store
        ? {store: inputs.store.value, km: asNumber(inputs.km)}
        : {lat: asNumber(inputs.lat), lon: asNumber(inputs.lon), km: asNumber(inputs.km)});
      return box;
    }

    // --- the preview -------------------------------------------------------------------------

    async preview() {
      if (this.broken || this.previewButton.disabled) return;
      const {tree, paths} = serialize(this.root, this.form);
      this.paths = paths;
      const token = this.textarea.form.querySelector("[name=csrfmiddlewaretoken]");
      this.previewButton.disabled = true;
      this.result.replaceChildren(el("p", {class: "rb-counting"}, "Counting…"));
      try {
        const response = await fetch(this.config.previewUrl, {
          method: "POST", credentials: "same-origin",
          headers: {"Content-Type": "application/json", Accept: "application/json",
                    "X-CSRFToken": token ? token.value : ""},
          body: JSON.stringify({rules: tree, target_group_id: this.config.targetGroupId})});
        const data = await response.json().catch(() => null);
        if (response.status === 400 && data && data.errors) this.showInvalid(data.errors);
        else if (!response.ok || !data) throw new Error(`the server answered ${response.status}`);
        else this.showPreview(data);
      } catch (error) {
        this.result.replaceChildren(el("p", {class: "errornote"},
                                       `The preview failed: ${error.message}.`));
      } finally {
        this.previewButton.disabled = false;
      }
    }

    showInvalid(errors) {
      this.setErrors(errors);
      this.render();
      const list = el("ul", {class: "errorlist"});
      for (const [path, messages] of Object.entries(errors)) {
        for (const message of messages) list.append(el("li", {}, `${path}: ${message}`));
      }
      this.result.replaceChildren(
        el("p", {class: "errornote rb-invalid"}, "These rules cannot be counted yet:"), list);
    }

    showPreview(data) {
      this.errors.clear();
      this.render();
      const size = el("p", {class: "rb-size"},
                      el("strong", {class: "rb-size-count"}, numberFormat.format(data.size)),
                      data.size === 1 ? " member matches" : " members match");
      if (data.estimated) {
        size.prepend("About ");
        size.append(el("span", {class: "rb-estimated"},
                       " (estimated: the exact count took too long)"));
      }
      const channels = this.config.channels.filter((c) => c.value in data.reachable);
      const reachable = el(
        "table", {class: "rb-reachable"}, el("caption", {}, "Reachable for marketing on"),
        el("thead", {}, el("tr", {}, ...channels.map((c) => el("th", {scope: "col"}, c.label)))),
        el("tbody", {}, el("tr", {}, ...channels.map((c) => el(
          "td", {"data-channel": c.value}, numberFormat.format(data.reachable[c.value]))))));
      const parts = [size, reachable];
      if (data.sample && data.sample.length) {
        const columns = [["id", "Id"], ["external_id", "External id"], ["name", "Name"],
                         ["email", "Email"], ["phone", "Phone"], ["city", "City"],
                         ["language", "Language"]];
        const rows = data.sample.map((member) => {
          const cells = columns.map(([key]) => {
            if (key === "name") {
              return el("td", {}, [member.first_name, member.last_name].filter(Boolean)
                .join(" "));
            }
            if (key === "id" && this.config.memberUrl) {
              return el("td", {}, el("a", {
                href: this.config.memberUrl.replace("__id__", member.id)}, String(member.id)));
            }
            return el("td", {}, shown(member[key]));
          });
          return el("tr", {}, ...cells);
        });
        parts.push(el("table", {class: "rb-sample"},
                      el("caption", {}, `A sample: the first ${data.sample.length} by id`),
                      el("thead", {}, el("tr", {}, ...columns.map(
                        ([, label]) => el("th", {scope: "col"}, label)))),
                      el("tbody", {}, ...rows)));
      }
      this.result.replaceChildren(...parts);
    }
  }

  function start() {
    const textarea = document.querySelector("textarea[data-rule-builder]");
    const config = document.getElementById("rule-builder-config");
    if (!textarea || !config) return;
    new RuleBuilder(textarea, JSON.parse(config.textContent)).start();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
