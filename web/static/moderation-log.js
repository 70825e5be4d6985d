// The moderation log of a channel, shown to its moderators: who deleted a message,
// took or gave back someone's right to send, set the slow mode or removed someone,
// and when. It reads GET /api/chat/{channel}/moderation (docs/protocol.md).

import { formatInterval, formatLocalTime } from "./chat-view.js";

/** Returns a <bdi> of `name`, so that a name written right to left keeps its place. */
function isolatedName(name) {
  const element = document.createElement("bdi");
  element.textContent = name ?? "";
  return element;
}

/**
 * Returns the French sentence of one log entry, without its time, as strings and
 * <bdi> elements for the names.
 */
export function describeAction(entry) {
  const by = isolatedName(entry.by?.name);
  const user = isolatedName(entry.user?.name);
  switch (entry.action) {
    case "delete":
      return [by, " a supprimé un message de ", user, "."];
    case "mute":
      return [by, " a retiré la parole à ", user, "."];
    case "unmute":
      return [by, " a rendu la parole à ", user, "."];
    case "slow_mode":
      return entry.interval_secs > 0
        ? [by, ` a activé le mode lent : ${formatInterval(entry.interval_secs)} entre deux messages.`]
        : [by, " a désactivé le mode lent."];
    case "remove":
      return [by, " a retiré ", user, " du live."];
    default:
      return [by, ` : ${entry.action}`];
  }
}

export class ModerationLog {
  /** Binds the log under `root`, whose data-url is the log's API; times show in `timeZone`. */
  constructor(root, { timeZone = null } = {}) {
    this.url = root.dataset.url;
    this.timeZone = timeZone;
    this.list = root.querySelector("[data-moderation-log-entries]");
    this.empty = root.querySelector("[data-moderation-log-empty]");
    this.error = root.querySelector("[data-moderation-log-error]");
    this.loading = null;
  }

  /** Reads the log again and shows it; a refresh asked during a read waits for it. */
  async refresh() {
    if (this.loading !== null) {
      this.loading = this.loading.then(() => this.load());
    } else {
      this.loading = this.load();
    }
    const loading = this.loading;
    await loading;
    if (this.loading === loading) {
      this.loading = null;
    }
  }

  async load() {
    let body;
    try {
      const response = await fetch(this.url, { credentials: "same-origin" });
      if (!response.ok) {
        throw new Error(`HTTP ${response.status}`);
      }
      body = await response.json();
    } catch (error) {
      console.warn("moderation log: reading %s failed: %s", this.url, error);
      this.error.textContent = "Le journal de modération n'a pas pu être chargé.";
      this.error.hidden = false;
      return;
    }
    this.error.hidden = true;
    this.show(body.actions ?? []);
  }

  show(entries) {
    const items = entries.map((entry) => {
      const item = document.createElement("li");
      const time = document.createElement("time");
      time.dateTime = entry.at;
      time.textContent = formatLocalTime(entry.at, this.timeZone);
      const text = document.createElement("span");
      text.append(...describeAction(entry));
      item.dataset.action = entry.action;
      item.append(time, " ", text);
      return item;
    });
    this.list.replaceChildren(...items);
    this.empty.hidden = items.length > 0;
  }
}
