// Share dialog and study selection. Progressive: without JavaScript every field shows and the server checks all.
"use strict";
(function () {
  // Study browser: the selection may hold one patient only (the server refuses mixed selections too).
  const selectForm = document.getElementById("share-select");
  if (selectForm) {
    const button = selectForm.querySelector("button[type=submit]");
    const status = document.getElementById("selection-status");
    const boxes = () => Array.from(document.querySelectorAll("input[type=checkbox][form=share-select]"));
    const update = () => {
      const chosen = boxes().filter((b) => b.checked);
      const patients = new Set(chosen.map((b) => b.dataset.patient));
      const mixed = patients.size > 1;
      button.disabled = chosen.length === 0 || mixed;
      status.textContent = mixed ? status.dataset.mixed : chosen.length ? status.dataset.count.replace("{n}", chosen.length) : "";
      status.classList.toggle("alert", mixed);
    };
    document.addEventListener("change", (e) => { if (e.target.matches("input[form=share-select]")) update(); });
    update();
  }

  // Share dialog: the consent question only for a care provider, the e-mail field only for e-mail delivery, the
  // name on the letter only for a letter.
  const form = document.querySelector("form.share-form");
  if (form) {
    const consent = document.getElementById("consent");
    const email = document.getElementById("email-field");
    const letter = document.getElementById("letter-field");
    const value = (name) => { const r = form.querySelector(`input[name=${name}]:checked`); return r ? r.value : ""; };
    const update = () => {
      if (consent) consent.hidden = value("recipient_type") !== "care_provider";
      if (email) email.hidden = value("delivery") !== "email";
      if (letter) letter.hidden = value("delivery") !== "letter";
    };
    form.addEventListener("change", update);
    update();
  }
})();
