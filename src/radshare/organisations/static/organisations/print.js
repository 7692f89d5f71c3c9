// The recovery codes page: a Print button, shown only where it can work (docs/security.md A9).
for (const button of document.querySelectorAll("[data-print]")) {
  button.hidden = false;
  button.addEventListener("click", () => window.print());
}
