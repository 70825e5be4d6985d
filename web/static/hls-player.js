// The live page's HLS player: the live a few seconds behind, for a viewer whom WebRTC
// cannot serve (docs/protocol.md, "HLS stream"). hls.js plays it through Media Source
// Extensions; a browser without them but with native HLS plays it by itself.
//
// The stream's links are signed and expire. The player asks the server for a new link
// before the current one expires and sends every request of hls.js to the newest one,
// so a long evening plays on while a copied link stops working.

import Hls from "./vendor/hls.light.min.mjs";

// The path prefix of a signed link: /hls/<live id>/<expires>/<signature>/.
const LINK_PREFIX = /\/hls\/\d+\/\d+\/[^/]+\//;
// The stream starts a few seconds after the live (its first segments): until then the
// link API reports it as not ready, and the player asks again after this delay, doubled
// after each try up to the maximum.
const NOT_READY_RETRY_MS = 1_000;
const NOT_READY_RETRY_MAX_MS = 10_000;
// hls.js gives up on a request after its own retries. The player then starts over
// this long after, with a new link, as long as the live is on.
const RESTART_DELAY_MS = 3_000;

export const HlsPlayerError = Object.freeze({
  UNSUPPORTED: "Votre navigateur ne sait pas lire le live en léger différé.",
  REFUSED: "Le live en léger différé n'est pas accessible : rechargez la page.",
});

export class HlsPlayer extends EventTarget {
  /**
   * Loads the live `liveId` into `video`, which the caller plays. Dispatches "error"
   * with {message} in French when the stream cannot be played.
   */
  constructor(video, liveId) {
    super();
    this.video = video;
    this.linkApi = `/api/lives/${liveId}/hls`;
    this.hls = null;
    this.linkPrefix = null;
    this.refreshTimer = null;
    this.retryTimer = null;
    this.stopped = true;
  }

  get isPlaying() {
    return !this.stopped;
  }

  async start() {
    if (!this.stopped) {
      return;
    }
    this.stopped = false;
    const link = await this.fetchReadyLink();
    if (link === null || this.stopped) {
      return;
    }
    this.video.srcObject = null;
    if (Hls.isSupported()) {
      this.startHlsJs(link.master_url);
    } else if (this.video.canPlayType("application/vnd.apple.mpegurl")) {
      // NOTE: native playback keeps the link it started with, so it stops when that
      // link expires, 15 to 20 minutes later. Desktop Chromium and Firefox take the
      // hls.js branch above.
      this.video.src = link.master_url;
    } else {
      this.fail(HlsPlayerError.UNSUPPORTED);
    }
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.refreshTimer);
    clearTimeout(this.retryTimer);
    if (this.hls !== null) {
      this.hls.destroy();
      this.hls = null;
    }
    if (this.video.src) {
      this.video.removeAttribute("src");
      this.video.load();
    }
  }

  startHlsJs(masterUrl) {
    const hls = new Hls({
      // the light build brings no worker file; fMP4 needs no transmuxing anyway
      enableWorker: false,
      // hls.js lets this open the request: each goes to the newest link
      xhrSetup: (xhr, url) => xhr.open("GET", url.replace(LINK_PREFIX, this.linkPrefix), true),
    });
    hls.on(Hls.Events.ERROR, (_event, data) => {
      if (!data.fatal) {
        return;
      }
      console.warn("hls: fatal %s error: %s", data.type, data.details);
      hls.destroy();
      if (this.hls === hls) {
        this.hls = null;
        this.restartLater();
      }
    });
    hls.loadSource(masterUrl);
    hls.attachMedia(this.video);
    this.hls = hls;
  }

  restartLater() {
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(async () => {
      if (this.stopped) {
        return;
      }
      this.stopped = true;
      await this.start();
    }, RESTART_DELAY_MS);
  }

  /** Returns the link once the stream has its master playlist, or null when refused. */
  async fetchReadyLink() {
    let delayMs = NOT_READY_RETRY_MS;
    while (!this.stopped) {
      const link = await this.fetchLink();
      if (link === null) {
        return null;
      }
      if (link.ready) {
        return link;
      }
      await new Promise((resolve) => {
        this.retryTimer = setTimeout(resolve, delayMs);
      });
      delayMs = Math.min(delayMs * 2, NOT_READY_RETRY_MAX_MS);
    }
    return null;
  }

  /** Fetches a new link, keeps its prefix for the next requests and plans its refresh. */
  async fetchLink() {
    let response;
    try {
      response = await fetch(this.linkApi, { headers: { Accept: "application/json" } });
    } catch (error) {
      console.warn("hls: the link request failed", error);
      this.restartLater();
      return null;
    }
    if (!response.ok) {
      // 403 (not registered) or 409 (the live is not on): nothing to play
      console.warn("hls: link request rejected with HTTP %d", response.status);
      if (response.status !== 409) {
        this.fail(HlsPlayerError.REFUSED);
      }
      return null;
    }
    const link = await response.json();
    this.linkPrefix = link.link_prefix;
    clearTimeout(this.refreshTimer);
    this.refreshTimer = setTimeout(() => {
      if (!this.stopped) {
        this.fetchLink();
      }
    }, link.refresh_in_seconds * 1000);
    return link;
  }

  fail(message) {
    this.stop();
    this.dispatchEvent(new CustomEvent("error", { detail: { message } }));
  }
}
