"""Template injection and resource payloads in marketer templates (Jinja2): each is refused
at save with a form error naming its field when it can be seen in the source, and, refused or
not, renders safely: no settings, secret or object leaks out, a render stays within its time
and size budget (communications.renderers), and a failing render fails only that member's
message, with the reason recorded, never the batch.

The render checks run every payload past the save-time check, as a template stored before a
rule existed would be: the sandbox's budget is the second line, not a copy of the first."""

from __future__ import annotations

import time

import pytest
from django.conf import settings

from communications.admin.templates import TemplateForm
from communications.models import Message, Template
from communications.renderers import (
    MAX_OUTPUT_CHARS,
    CompiledTemplate,
    TemplateLimitExceeded,
    member_context,
)
from communications.services import mailing_prepare, mailing_schedule, message_batch_dispatch
from tests.communications.factories import GatewayFactory, MailingFactory
from tests.members.factories import consenting_member

DOUBLINGS = 20
REFUSED, RUNTIME = True, False
PAYLOADS = [
    # names that are not placeholders: settings, config, request, Jinja's globals
    pytest.param("{{ settings }}", REFUSED, id="settings"),
    pytest.param("{{ settings.SECRET_KEY }}", REFUSED, id="settings-secret-key"),
    pytest.param("{{ config }}", REFUSED, id="config"),
    pytest.param("{{ config.items() }}", REFUSED, id="config-items"),
    pytest.param("{{ request }}", REFUSED, id="request"),
    pytest.param("{{ self }}", REFUSED, id="self"),
    pytest.param("{{ self.__init__.__globals__ }}", REFUSED, id="self-globals"),
    pytest.param("{{ cycler.__init__.__globals__.os.popen('id').read() }}", REFUSED,
                 id="cycler-os"),
    pytest.param("{{ joiner.__init__.__globals__ }}", REFUSED, id="joiner-globals"),
    pytest.param("{{ namespace.__init__.__globals__ }}", REFUSED, id="namespace-globals"),
    pytest.param("{{ lipsum.__globals__['os'].popen('id').read() }}", REFUSED, id="lipsum-os"),
    pytest.param("{{ lipsum(10**6) }}", REFUSED, id="lipsum-huge"),
    pytest.param("{% for i in range(10**9) %}x{% endfor %}", REFUSED, id="range-huge"),
    pytest.param("{{ dict(a=1) }}", REFUSED, id="dict-global"),
    # Python's object graph
    pytest.param("{{ ''.__class__ }}", REFUSED, id="str-class"),
    pytest.param("{{ ''.__class__.__mro__[1].__subclasses__() }}", REFUSED, id="subclasses"),
    pytest.param("{{ [].__class__.__base__.__subclasses__() }}", REFUSED, id="list-subclasses"),
    pytest.param("{{ member.__dict__ }}", REFUSED, id="member-dict"),
    pytest.param("{{ member._meta }}", REFUSED, id="member-meta"),
    pytest.param("{{ member.first_name.__class__.__mro__ }}", REFUSED, id="name-mro"),
    pytest.param("{{ member['__class__'] }}", REFUSED, id="member-getitem-class"),
    pytest.param("{{ member.items() }}", REFUSED, id="member-items"),
    pytest.param("{{ member.get('first_name') }}", REFUSED, id="member-get"),
    pytest.param("{{ member.password }}", REFUSED, id="member-password"),
    pytest.param("{{ member.first_name.format_map(member) }}", REFUSED, id="format-map"),
    # filters that reach attributes or dump objects
    pytest.param("{{ member|attr('__class__') }}", REFUSED, id="attr-class"),
    pytest.param("{{ member|attr('_meta') }}", REFUSED, id="attr-meta"),
    pytest.param("{{ '%s'|format(member) }}", REFUSED, id="format-filter"),
    pytest.param("{{ member|tojson }}", REFUSED, id="tojson"),
    pytest.param("{{ member|pprint }}", REFUSED, id="pprint"),
    pytest.param("{{ member|map(attribute='__class__')|list }}", REFUSED, id="map-list"),
    pytest.param("{{ member|xmlattr }}", REFUSED, id="xmlattr"),
    # str.format and % formatting
    pytest.param("{{ '{0.__class__}'.format(member) }}", REFUSED, id="format-method"),
    pytest.param("{{ '{0:>999999999}'.format(1) }}", REFUSED, id="format-width"),
    pytest.param("{{ '%999999999s' % 'a' }}", RUNTIME, id="percent-width"),
    pytest.param("{{ '%(first_name)s' % member }}", RUNTIME, id="percent-member"),
    # other templates and macros
    pytest.param("{% include 'other.html' %}", REFUSED, id="include"),
    pytest.param("{% import 'macros.html' as m %}", REFUSED, id="import"),
    pytest.param("{% extends 'base.html' %}", REFUSED, id="extends"),
    pytest.param("{% from 'x' import y %}", REFUSED, id="from-import"),
    pytest.param("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", REFUSED, id="macro-recursion"),
    pytest.param("{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}"
                 "{% endmacro %}{{ f(40) }}", REFUSED, id="macro-exponential"),
    pytest.param("{% call(x) f() %}{% endcall %}", REFUSED, id="call-block"),
    # size: repetition, powers, growing strings
    pytest.param("{{ 'a' * 10**9 }}", RUNTIME, id="repeat-huge"),
    pytest.param("{{ member.first_name * 1000000000 }}", RUNTIME, id="repeat-name"),
    pytest.param("{{ (9**100)**100 }}", RUNTIME, id="power-huge"),
    pytest.param("{{ ([1] * 1000) * 1000 }}", RUNTIME, id="list-repeat"),
    pytest.param("{{ ('a' * 100000)|replace('a', 'a' * 1000) }}", RUNTIME, id="replace-grow"),
    pytest.param("{{ ('ab' * 100000).split('a') }}", RUNTIME, id="split-huge"),
    pytest.param("{{ ''|center(1000000000) }}", REFUSED, id="center"),
    pytest.param("{{ member.first_name|indent(1000000000) }}", REFUSED, id="indent"),
    pytest.param("{{ ('a' * 100000).ljust(1000000000) }}", REFUSED, id="ljust"),
    pytest.param("{{ member.first_name.zfill(10**9) }}", REFUSED, id="zfill"),
    pytest.param("{{ ('a' * 100000).replace('a', 'aaaaaaaaaa') }}", REFUSED, id="replace-method"),
    pytest.param("{% set x = 'a' * 100000 %}" + "{% set x = x ~ x %}" * DOUBLINGS + "{{ x }}",
                 REFUSED, id="set-concat-doubling"),
    pytest.param("{% set x = 'a' * 100000 %}" + "{% set x = x + x %}" * DOUBLINGS + "{{ x }}",
                 REFUSED, id="set-add-doubling"),
    pytest.param("{% set x %}{{ 'a' * 100000 }}{% endset %}"
                 + "{% set x %}{{ x }}{{ x }}{% endset %}" * DOUBLINGS + "{{ x }}",
                 REFUSED, id="set-block-doubling"),
    pytest.param("{{ 'a' * 150000 }}{{ 'b' * 150000 }}", RUNTIME, id="output-over-cap"),
    # time: loops
    pytest.param("{% for a in 'x' * 1000 %}{% for b in 'x' * 1000 %}{% for c in 'x' * 1000 %}"
                 "{% endfor %}{% endfor %}{% endfor %}", RUNTIME, id="nested-loops"),
    pytest.param("{% for a in member.first_name * 5000 %}{% for b in member.first_name * 5000 %}"
                 "{{ member.first_name }}{% endfor %}{% endfor %}", RUNTIME, id="loops-output"),
    pytest.param("{% filter upper %}{% for i in 'x' * 100000 %}{{ 'a' * 1000 }}{% endfor %}"
                 "{% endfilter %}", RUNTIME, id="filter-block-buffer"),
    pytest.param("{% for i in 'x' * 150000 %}{% endfor %}", RUNTIME, id="empty-loop"),
    # methods read but not called (their repr is an address in memory)
    pytest.param("{{ '{}'.format }}", RUNTIME, id="method-repr"),
    pytest.param("{{ member.first_name.upper }}", RUNTIME, id="name-method-repr"),
    pytest.param("{{ 'abc'.upper }}{{ 'abc'['upper'] }}", RUNTIME, id="folded-method-repr"),
]
SECRET_MARKERS = (" at 0x", "<class", "&lt;class", "<module", "&lt;module", "<function",
                  "&lt;function", "<built-in", "&lt;built-in", "<bound", "&lt;bound", "Settings",
                  "DATABASES")


def _field_for(source: str, index: int) -> str:
    # Spread over the three parts; the subject holds 300 characters.
    field = ("subject", "body", "html_body")[index % 3]
    return "body" if field == "subject" and len(source) > 300 else field


def _parts(source: str, field: str) -> dict[str, str]:
    parts = {"subject": "Offer", "body": "Dear member", "html_body": "<p>Dear member</p>"}
    parts[field] = source
    return parts


def _indexed(params):
    return [pytest.param(p.values[0], p.values[1], index, id=p.id)
            for index, p in enumerate(params)]


def test_the_corpus_has_about_fifty_payloads():
    assert len(PAYLOADS) >= 50


@pytest.mark.parametrize("source, refused, index", _indexed(PAYLOADS))
def test_the_template_form_says_at_save_what_it_can_see(source, refused, index):
    field = _field_for(source, index)
    form = TemplateForm(data={"name": "Injected", "channel": "email", "language": "en",
                              "push_data": "{}", **_parts(source, field)})

    valid = form.is_valid()

    if refused:
        assert not valid
        assert field in form.errors
    else:
        # Only resource payloads pass the source check; the render budget stops them.
        assert valid, form.errors
        with pytest.raises(Exception) as raised:
            CompiledTemplate(**_parts(source, field)).render(member_context(
                {"member__first_name": "Ann"}))
        assert not isinstance(raised.value, MemoryError | RecursionError)


@pytest.mark.parametrize("source, refused, index", _indexed(PAYLOADS))
def test_the_payload_renders_within_budget_and_leaks_nothing(source, refused, index):
    field = _field_for(source, index)
    # This thread's CPU time, not the wall clock: a runaway render spends it, while a stall of
    # the machine under the suite (seen once at 2.1 s on a slow CI host) does not.
    started = time.thread_time()

    try:
        rendered = CompiledTemplate(**_parts(source, field)).render(
            member_context({"member__first_name": "Ann", "member__email": "ann@example.com"}),
            unsubscribe_url="https://engage.example.com/u/x/")
        output = f"{rendered.subject}\n{rendered.body}\n{rendered.html_body}"
    except Exception as exc:  # noqa: BLE001  (a refusal is fine; what it says is checked)
        assert not isinstance(exc, MemoryError)
        output = str(exc)

    assert time.thread_time() - started < 1.0
    assert len(output) <= 2 * MAX_OUTPUT_CHARS
    assert settings.SECRET_KEY not in output
    password = settings.DATABASES["default"].get("PASSWORD")
    assert not password or password not in output
    assert [marker for marker in SECRET_MARKERS if marker in output] == []


def test_a_budget_refusal_names_the_limit():
    template = CompiledTemplate(subject="x", body="{% for i in 'x' * 150000 %}{% endfor %}")

    with pytest.raises(TemplateLimitExceeded, match="operations"):
        template.render(member_context({}))


def test_a_template_within_budget_still_renders_loops_and_filters():
    template = CompiledTemplate(
        subject="Hi {{ member.first_name|title }}",
        body="{% for c in member.first_name %}{{ c|upper }}{% endfor %} "
             "{{ (member.last_name ~ '!')|replace('!', '?') }} {{ 'ab' * 3 }}",
        html_body="<p>{{ member.first_name }} &amp; {{ '<b>' }}</p>")

    rendered = template.render(member_context({"member__first_name": "ann",
                                               "member__last_name": "Lee"}))

    assert (rendered.subject, rendered.body) == ("Hi Ann", "ANN Lee? ababab")
    assert rendered.html_body == "<p>ann &amp; &lt;b&gt;</p>"


def _stored_template(body: str) -> Template:
    """A template row written past the save-time check, as one saved under older rules."""
    return Template.objects.create(name="Stored", channel="email", subject="Offer", body=body)


def _dispatched(template: Template, names: list[str]) -> tuple[dict, dict[str, Message]]:
    from tests.peers.smtp import SmtpPeer

    peer = SmtpPeer().start()
    try:
        members = [consenting_member(first_name=name) for name in names]
        mailing = MailingFactory(template=template,
                                 gateway=GatewayFactory(settings=peer.gateway_settings()))
        mailing_schedule(mailing=mailing)
        mailing_prepare(mailing_id=mailing.pk)
        outcome = message_batch_dispatch(mailing_id=mailing.pk, batch_size=len(names) + 1)
    finally:
        peer.stop()
    messages = {m.member.first_name: m
                for m in Message.objects.filter(mailing=mailing).select_related("member")}
    assert {m.member_id for m in messages.values()} == {m.pk for m in members}
    return outcome, messages


@pytest.mark.django_db
def test_a_template_over_budget_for_one_member_fails_only_that_members_message():
    # given: repetition within the cap for a short name, over it for a long one
    template = _stored_template("{{ member.first_name * 40000 }}")

    # when
    outcome, messages = _dispatched(template, ["Al", "Bartholomew", "Cy"])

    # then
    assert outcome["sent"] == 2
    poisoned = messages["Bartholomew"]
    assert (poisoned.status, poisoned.error_code) == ("failed", "render")
    assert "repetition too large" in poisoned.error
    assert {messages["Al"].status, messages["Cy"].status} == {"sent"}


@pytest.mark.django_db
def test_a_stored_template_that_no_longer_compiles_fails_each_message_with_the_reason():
    template = _stored_template("{{ member|attr('__class__') }}")

    outcome, messages = _dispatched(template, ["Al", "Cy"])

    assert outcome["sent"] == 0
    assert {(m.status, m.error_code) for m in messages.values()} == {("failed", "render")}
    assert all("No filter named 'attr'" in m.error for m in messages.values())


@pytest.mark.django_db
def test_a_runaway_loop_fails_its_messages_quickly_and_the_batch_completes():
    template = _stored_template("{% for a in 'x' * 1000 %}{% for b in 'x' * 1000 %}"
                                "{% endfor %}{% endfor %}")

    started = time.monotonic()
    outcome, messages = _dispatched(template, ["Al", "Cy", "Di"])

    assert time.monotonic() - started < 10
    assert {(m.status, m.error_code) for m in messages.values()} == {("failed", "render")}
    assert all("operations" in m.error for m in messages.values())
