// Live unread counts on the mentoring dashboard: one chat socket per active
// conversation resumes from the reader's read position, so it receives exactly the
// messages not read yet, then each new one as it is sent.

import { ChatClient } from "./chat.js";

/** Returns "1 non lu", "3 non lus". */
function formatUnread(count) {
  return `${count.toLocaleString("fr-FR")} non lu${count > 1 ? "s" : ""}`;
}

function watch(item) {
  const data = item.dataset;
  const userId = Number(data.userId);
  const badge = item.querySelector("[data-unread-count]");
  // Seqs of the other member's messages above the read position, not deleted.
  const unread = new Set();
  const show = () => {
    badge.textContent = formatUnread(unread.size);
    badge.hidden = unread.size === 0;
  };

  const client = new ChatClient(data.chatPath);
  client.lastSeq = Number(data.readSeq);
  client.addEventListener("message", ({ detail }) => {
    if (detail.event.author?.id !== userId) {
      unread.add(detail.event.seq);
      show();
    }
  });
  client.addEventListener("deletion", ({ detail }) => {
    unread.delete(detail.deletedSeq);
    show();
  });
  client.addEventListener("reset", () => {
    unread.clear();
    show();
  });
  client.start();
}

for (const item of document.querySelectorAll("[data-conversation][data-active='true']")) {
  watch(item);
}
