// The replay page: the recording's video and the live's chat shown in step with it.
// Each message appears once the video's current time passes its offset from the
// start of the recording; seeking back hides the messages after the new position.

import { createMessageElement } from "./chat-view.js";

// A video link that fails is fetched afresh (signed links expire), but at most once
// in this interval, so a file that is really gone does not cause a request loop.
const LINK_REFRESH_MIN_INTERVAL_MS = 60_000;

// While the recording is being finished, the page requests its status again at this
// interval. Finishing an evening live takes a few minutes, so a few requests suffice.
const PROCESSING_POLL_MS = 10_000;

const STATUS_MESSAGES = {
  recording: "Le live est en cours : son replay sera disponible après la fin.",
  processing: "Le replay est en préparation. Cette page l'affichera dès qu'il sera prêt.",
  ready: "",
  failed: "Le replay n'a pas pu être préparé.",
};

/** Formats a number of seconds as a position in the video, such as "4:05" or "1:02:05". */
export function formatPosition(totalSeconds) {
  const seconds = Math.max(0, Math.floor(totalSeconds));
  const hours = Math.floor(seconds / 3600);
  const minutes = Math.floor((seconds % 3600) / 60);
  const rest = String(seconds % 60).padStart(2, "0");
  return hours > 0 ? `${hours}:${String(minutes).padStart(2, "0")}:${rest}` : `${minutes}:${rest}`;
}

/** Formats a duration in French, such as "45 s", "12 min 04 s" or "1 h 02 min". */
export function formatDuration(totalSeconds) {
  const seconds = Math.max(0, Math.round(totalSeconds));
  const hours = Math.floor(seconds / 3600);
  const minutes = Math.floor((seconds % 3600) / 60);
  const rest = seconds % 60;
  if (hours > 0) {
    return `${hours} h ${String(minutes).padStart(2, "0")} min`;
  }
  if (minutes > 0) {
    return `${minutes} min ${String(rest).padStart(2, "0")} s`;
  }
  return `${rest} s`;
}

/** Returns how many of the ascending `offsets` are at or before `time`. */
function countUpTo(offsets, time) {
  let low = 0;
  let high = offsets.length;
  while (low < high) {
    const middle = (low + high) >> 1;
    if (offsets[middle] <= time) {
      low = middle + 1;
    } else {
      high = middle;
    }
  }
  return low;
}

class Replay {
  constructor(root) {
    this.apiUrl = root.dataset.replayApi;
    // the recording's status when the page was rendered, "" when nothing was recorded
    this.initialStatus = root.dataset.status;
    this.video = root.querySelector("[data-replay-video]");
    this.status = root.querySelector("[data-replay-status]");
    this.duration = root.querySelector("[data-replay-duration]");
    this.list = root.querySelector("[data-replay-messages]");
    this.chatStatus = root.querySelector("[data-replay-chat-status]");
    this.messages = [];
    this.offsets = [];
    // number of messages, from the first, currently in the list
    this.shownCount = 0;
    this.loaded = false;
    this.lastLinkRefresh = 0;
  }

  async start() {
    if (this.initialStatus === "") {
      // the template already states that the live was not recorded
      this.chatStatus.textContent = "";
      return;
    }
    let replay;
    try {
      replay = await this.fetchReplay();
    } catch (error) {
      console.error("replay: could not load %s", this.apiUrl, error);
      this.showStatus("Le replay n'a pas pu être chargé. Rechargez la page dans un instant.");
      return;
    }

    let status = replay.status ?? "ready";
    if (status === "recording" && replay.live_state === "ended") {
      // the recorder's node has yet to move the recording to processing
      status = "processing";
    }
    if (status !== "ready") {
      this.showNotReady(status, replay.reason ?? replay.failure_reason ?? null);
      if (status === "processing" || status === "recording") {
        setTimeout(() => this.start(), PROCESSING_POLL_MS);
      }
      return;
    }
    this.load(replay);
  }

  async fetchReplay() {
    const response = await fetch(this.apiUrl, {
      headers: { Accept: "application/json" },
      credentials: "same-origin",
    });
    if (!response.ok) {
      throw new Error(`HTTP ${response.status}`);
    }
    return response.json();
  }

  showNotReady(status, reason) {
    let text = STATUS_MESSAGES[status] ?? "Le replay n'est pas disponible.";
    if (status === "failed" && reason) {
      text = `Le replay n'a pas pu être préparé : ${reason}`;
    }
    this.showStatus(text);
    this.video.hidden = true;
    const coming = status === "processing" || status === "recording";
    this.chatStatus.textContent = coming ? "La discussion s'affichera avec la vidéo." : "";
  }

  load(replay) {
    this.showStatus("");
    this.video.hidden = false;
    if (replay.poster_url) {
      this.video.poster = replay.poster_url;
    }
    this.video.src = replay.video_url;
    if (typeof replay.duration_seconds === "number" && this.duration !== null) {
      this.duration.textContent = `Durée : ${formatDuration(replay.duration_seconds)}`;
      this.duration.hidden = false;
    }

    this.messages = [...(replay.messages ?? [])].sort(
      (first, second) => first.offset_seconds - second.offset_seconds,
    );
    this.offsets = this.messages.map((message) => message.offset_seconds);
    this.chatStatus.textContent =
      this.messages.length === 0
        ? "Aucun message n'a été écrit pendant ce live."
        : "Les messages apparaissent au fil de la vidéo.";

    for (const type of ["timeupdate", "seeking", "seeked", "play", "loadedmetadata"]) {
      this.video.addEventListener(type, () => this.showMessagesUpTo(this.video.currentTime));
    }
    this.video.addEventListener("error", () => this.handleVideoError());
    this.loaded = true;
    this.showMessagesUpTo(this.video.currentTime);
  }

  /** Fetches fresh signed links once in a while and resumes where the video stopped. */
  async handleVideoError() {
    const now = Date.now();
    if (now - this.lastLinkRefresh < LINK_REFRESH_MIN_INTERVAL_MS) {
      this.showStatus("La vidéo n'a pas pu être lue. Rechargez la page pour réessayer.");
      return;
    }
    this.lastLinkRefresh = now;
    const position = this.video.currentTime;
    try {
      const replay = await this.fetchReplay();
      this.video.src = replay.video_url;
      this.video.currentTime = position;
    } catch (error) {
      console.error("replay: could not refresh the video link", error);
      this.showStatus("La vidéo n'a pas pu être lue. Rechargez la page pour réessayer.");
    }
  }

  /** Makes the list show exactly the messages whose offset is at or before `time`. */
  showMessagesUpTo(time) {
    const target = countUpTo(this.offsets, time);
    if (target === this.shownCount) {
      return;
    }
    if (target < this.shownCount) {
      // seeking backwards: drop the messages written after the new position
      while (this.list.children.length > target) {
        this.list.lastElementChild.remove();
      }
    } else {
      const items = this.messages.slice(this.shownCount, target).map((message) =>
        createMessageElement({
          authorName: typeof message.author === "string" ? message.author : (message.author?.name ?? ""),
          text: message.text,
          timeText: formatPosition(message.offset_seconds),
        }),
      );
      this.list.append(...items);
      this.list.scrollTop = this.list.scrollHeight;
    }
    this.shownCount = target;
  }

  showStatus(text) {
    this.status.textContent = text;
    this.status.hidden = text === "";
  }
}

const root = document.querySelector("[data-replay]");
if (root !== null) {
  const replay = new Replay(root);
  window.veillee = { replay };
  replay.start();
}
