// Shows how many products are checked against the offer's limit as the member clicks; the
// server enforces the limit whatever this says.
document.querySelectorAll("form.favorites-form").forEach((form) => {
  const limit = Number(form.dataset.limit);
  const picked = form.querySelector(".favorites-picked");
  const over = form.querySelector(".favorites-over");
  form.addEventListener("change", () => {
    const count = form.querySelectorAll("input[name=product]:checked").length;
    picked.textContent = String(count);
    over.hidden = count <= limit;
  });
});
