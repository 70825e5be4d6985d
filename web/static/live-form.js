// The schedule and edit forms of a live (web/templates/live/new.html): a counter under
// each text field with a [data-max-chars] limit. It counts as the server does, in
// Unicode code points after NFC normalization, where the browser's maxlength would
// count UTF-16 code units and cut an emoji title at half the limit. A text over the
// limit gets the server's own message as its validity message, so the browser keeps
// the form from being sent.

import { countCodePoints } from "./chat.js";

/** Binds the counter of `field`, the <p> whose data-char-counter names the field. */
function bindCounter(field, counter) {
  const maxChars = Number(field.dataset.maxChars);
  // "Le titre" or "La description", the subject of the server's message
  const subject = field.dataset.fieldSubject;
  const update = () => {
    const count = countCodePoints(field.value.trim());
    const over = count > maxChars;
    counter.textContent = `${count} / ${maxChars}`;
    counter.classList.toggle("over", over);
    field.setCustomValidity(over ? `${subject} dépasse ${maxChars} caractères (${count}).` : "");
  };
  field.addEventListener("input", update);
  update();
  counter.hidden = false;
}

for (const field of document.querySelectorAll("[data-max-chars]")) {
  const counter = document.querySelector(`[data-char-counter="${field.name}"]`);
  if (counter !== null) {
    bindCounter(field, counter);
  }
}
