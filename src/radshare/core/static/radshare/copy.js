// Copy buttons: <button data-copy="id of a text field" data-copied="Copied" data-status="id of a live region">.
// Used for a share's link and a new API key. Without JavaScript the field stays there to select and copy by hand.
"use strict";
(function () {
  document.querySelectorAll("button[data-copy]").forEach((button) => {
    button.hidden = false;
    button.addEventListener("click", async () => {
      const input = document.getElementById(button.dataset.copy);
      const status = document.getElementById(button.dataset.status || "copy-status");
      input.select();
      try {
        await navigator.clipboard.writeText(input.value);
      } catch (err) {
        document.execCommand("copy");  // older browsers, and pages not served over HTTPS
      }
      if (status) status.textContent = button.dataset.copied;
    });
  });
})();
