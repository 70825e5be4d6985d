// The count beside "Mentorat" in the header of every page: unread messages, unread
// notifications and requests waiting for the reader's answer, read once per page.

const badge = document.querySelector("[data-mentoring-badge]");

async function update() {
  const response = await fetch("/api/mentoring/summary", { credentials: "same-origin" });
  if (!response.ok) {
    return;
  }
  const summary = await response.json();
  const total = summary.unread_messages + summary.unread_notifications + summary.pending_requests;
  badge.textContent = total.toLocaleString("fr-FR");
  badge.hidden = total === 0;
  badge.title =
    `${summary.unread_messages} message(s) non lu(s), ` +
    `${summary.unread_notifications} notification(s) non lue(s), ` +
    `${summary.pending_requests} demande(s) en attente de votre réponse`;
}

if (badge !== null) {
  update().catch((error) => console.warn("mentoring badge: %s", error));
}
