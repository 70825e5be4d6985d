// The live page's stage: the video, the status line, the host's controls and the
// chat beside them. Its data comes from the data-* attributes of the
// [data-live-stage] element (web/templates/live/_stage.html). It also keeps the rest
// of the page in step with the live: the state badge, the host's edit and cancel
// controls, and the recording line. Once the live is over, an end card takes the
// video's place and the status line follows the recording until its replay is ready.

import { ChatClient } from "./chat.js";
import { ChatView } from "./chat-view.js";
import { ModerationLog } from "./moderation-log.js";
import { HlsPlayer } from "./hls-player.js";
import { LiveSignaling, LiveState } from "./signaling.js";
import { CloseCode } from "./socket.js";

const NOT_REGISTERED_MESSAGE = "Inscrivez-vous pour rejoindre le live";
const REMOVED_MESSAGE = "La personne qui anime ce live vous en a retiré.";

const STATE_MESSAGES = {
  [LiveState.SCHEDULED]: "En attente du début du live…",
  [LiveState.OPEN]: "En attente du début du live…",
  [LiveState.LIVE]: "En direct",
  // followed by the recording's sentence, as in statusMessage
  [LiveState.ENDED]: "Le live est terminé.",
  [LiveState.CANCELLED]: "Ce live a été annulé.",
  [LiveState.INTERRUPTED]: "Le live est interrompu. Il reprendra dès que possible.",
};
// Shown to viewers until the live is back on air, while the host is away (as a `host`
// frame or the welcome reports) or the live is interrupted by the loss of its server
// process.
const RESUMING_MESSAGE = "Le live reprend…";
// Shown below the state line when a viewer on the HLS stream is back on WebRTC, for
// RETURNED_NOTE_MS, in place of the note that said why they watched it with a delay.
const RETURNED_MESSAGE = "Vous regardez de nouveau le live en direct.";
const RETURNED_NOTE_MS = 8_000;

// The sentences of web/templates/recordings/_status.html, which renders the same line
// when the page loads.
const RECORDING_MESSAGES = {
  recording: "Enregistrement en cours.",
  paused: "L'enregistrement est en pause.",
  processing: "Le replay est en préparation…",
  ready: "Le replay est prêt.",
  failed: "L'enregistrement a échoué.",
  coming: "L'enregistrement commencera avec le live.",
  none: "Ce live n'a pas été enregistré.",
};

// Titles of the card that replaces the video once the live is over.
const END_CARD_TITLES = {
  [LiveState.ENDED]: "Le live est terminé",
  [LiveState.CANCELLED]: "Ce live a été annulé",
};

// Maps the name of the DOMException that getUserMedia rejects with to the fix the host can make.
const CAMERA_ERROR_MESSAGES = {
  NotAllowedError:
    "Votre navigateur bloque l'accès à la caméra ou au micro. Autorisez-les pour ce site, puis rechargez la page.",
  SecurityError:
    "Votre navigateur bloque l'accès à la caméra ou au micro. Autorisez-les pour ce site, puis rechargez la page.",
  NotFoundError:
    "Aucune caméra ou aucun micro n'a été trouvé. Branchez-les, puis rechargez la page.",
  OverconstrainedError:
    "Aucune caméra ou aucun micro n'a été trouvé. Branchez-les, puis rechargez la page.",
  NotReadableError:
    "La caméra ou le micro est déjà utilisé par une autre application. Fermez-la, puis rechargez la page.",
};
const CAMERA_ERROR_OTHER =
  "Impossible d'accéder à la caméra ou au micro. Vérifiez qu'ils sont branchés, puis rechargez la page.";
// Browsers leave navigator.mediaDevices undefined outside a secure context: a page
// served over plain HTTP from an address other than localhost.
const CAMERA_ERROR_INSECURE =
  "Votre navigateur ne donne accès à la caméra que sur une connexion sécurisée : ouvrez le site en https.";

// States in which the host's camera is no longer needed.
const FINISHED_STATES = new Set([LiveState.ENDED, LiveState.CANCELLED]);
// States in which the host may still edit or cancel the live.
const NOT_STARTED_STATES = new Set([LiveState.SCHEDULED, LiveState.OPEN]);

/**
 * Returns the recording line for the live's `state` and its latest recording's
 * `status` (null when nothing was recorded) with its failure `reason`.
 */
function recordingSentence(state, status, reason) {
  if (status === "recording") {
    // the recording row stays in status recording until the recorder's node finishes it
    if (state === LiveState.INTERRUPTED) {
      return RECORDING_MESSAGES.paused;
    }
    return state === LiveState.ENDED ? RECORDING_MESSAGES.processing : RECORDING_MESSAGES.recording;
  }
  if (status === "failed" && reason) {
    return `L'enregistrement a échoué : ${reason}`;
  }
  if (status === "processing" || status === "ready" || status === "failed") {
    return RECORDING_MESSAGES[status];
  }
  if (NOT_STARTED_STATES.has(state)) {
    return RECORDING_MESSAGES.coming;
  }
  return state === LiveState.ENDED ? RECORDING_MESSAGES.none : "";
}

/** Returns "1 personne connectée", "14 personnes connectées", with French plural rules. */
function formatViewerCount(count) {
  const plural = new Intl.PluralRules("fr-FR").select(count) !== "one";
  const number = count.toLocaleString("fr-FR");
  return plural ? `${number} personnes connectées` : `${number} personne connectée`;
}

function goToLogin() {
  location.assign(`/login?next=${encodeURIComponent(location.pathname + location.search)}`);
}

class Stage {
  constructor(root) {
    const data = root.dataset;
    this.isHost = data.role === "host";
    // The state when the page was rendered; the signaling welcome brings the current one.
    this.initialState = data.state;
    this.replayUrl = data.replayUrl || null;
    // the JSON of the live's latest recording, which gives the ready replay's poster
    this.recordingApi = data.recordingApi || null;
    // maps each state name to the French label of the page's badge
    this.stateLabels = JSON.parse(data.stateLabels || "{}");
    this.video = root.querySelector("[data-stage-video]");
    this.status = root.querySelector("[data-stage-status]");
    this.error = root.querySelector("[data-stage-error]");
    this.startButton = root.querySelector("[data-stage-start]");
    this.endButton = root.querySelector("[data-stage-end]");
    this.viewers = root.querySelector("[data-stage-viewers]");
    this.unmuteButton = root.querySelector("[data-stage-unmute]");
    this.note = root.querySelector("[data-stage-note]");
    // hides RETURNED_MESSAGE after RETURNED_NOTE_MS
    this.noteTimer = null;
    // plays the HLS stream once the signaling sends this viewer there
    this.hlsPlayer = this.isHost ? null : new HlsPlayer(this.video, data.liveId);
    this.endCard = root.querySelector("[data-stage-end-card]");
    this.endTitle = root.querySelector("[data-stage-end-title]");
    this.endPoster = root.querySelector("[data-stage-end-poster]");
    this.endReplay = root.querySelector("[data-stage-end-replay]");
    if (this.replayUrl !== null) {
      root.querySelector("[data-stage-end-replay-link]").href = this.replayUrl;
    }
    this.posterRequested = false;
    // outside the stage, on the rest of the live page
    this.badge = document.querySelector("[data-live-badge] .badge");
    this.changeControls = document.querySelector("[data-live-change-controls]");
    this.recordingLine = document.querySelector("[data-live-recording]");
    // the latest recording from the signaling socket; undefined until its welcome
    this.recording = undefined;
    this.cameraStream = null;
    this.connected = false;
    this.stopped = false;
    // true while a `host` frame or the latest welcome reports the host away, until
    // "back", a welcome with the host present, or the next state frame
    this.hostAway = false;
    // true from an offer rejected with `try_again` (the live's media process is not
    // reachable yet) until a negotiation succeeds or the state changes
    this.offerRetrying = false;

    this.signaling = new LiveSignaling(data.signalingPath, this.isHost);
    this.chat = new ChatClient(data.chatPath);
    this.chatView = new ChatView(root, this.chat, {
      timeZone: data.timeZone || null,
      forbiddenMessage: NOT_REGISTERED_MESSAGE,
      onRemove: this.isHost ? (person) => this.removeParticipant(person) : null,
    });
    // the host's tools: removing a participant, and the moderation log below the stage
    this.csrfToken = data.csrfToken || "";
    this.removalsUrl = data.removalsUrl || null;
    const logRoot = document.querySelector("[data-moderation-log]");
    this.moderationLog =
      this.isHost && logRoot !== null
        ? new ModerationLog(logRoot, { timeZone: data.timeZone || null })
        : null;
    if (this.moderationLog !== null) {
      for (const type of ["welcome", "moderation", "deletion"]) {
        this.chat.addEventListener(type, () => this.moderationLog.refresh());
      }
    }
    this.bindSignaling();
    this.bindControls();
    for (const client of [this.signaling, this.chat]) {
      client.addEventListener("connection", ({ detail }) => {
        if (detail.status === "stopped" && detail.code === CloseCode.NOT_LOGGED_IN) {
          goToLogin();
        }
      });
    }
  }

  /** Removes `person` from the live after the host confirms; their sockets close at once. */
  async removeParticipant(person) {
    if (!confirm(`Retirer ${person.name} du live ? Cette personne ne pourra plus le rejoindre.`)) {
      return;
    }
    let response;
    try {
      response = await fetch(this.removalsUrl, {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": this.csrfToken },
        body: JSON.stringify({ user_id: person.id }),
        credentials: "same-origin",
      });
    } catch (error) {
      console.warn("live: removing user %d failed: %s", person.id, error);
      this.chatView.showError("La connexion est perdue : réessayez dans un instant.");
      return;
    }
    if (!response.ok) {
      const body = await response.json().catch(() => null);
      this.chatView.showError(body?.error?.message ?? "Le retrait a échoué. Réessayez.");
      return;
    }
    this.moderationLog?.refresh();
  }

  async start() {
    this.chat.start();
    this.signaling.start();
    if (this.isHost && !FINISHED_STATES.has(this.initialState)) {
      await this.startCamera();
    }
  }

  async startCamera() {
    if (navigator.mediaDevices?.getUserMedia === undefined) {
      console.warn("live: navigator.mediaDevices is unavailable, the page is not in a secure context");
      this.showError(CAMERA_ERROR_INSECURE);
      return;
    }
    try {
      this.cameraStream = await navigator.mediaDevices.getUserMedia({
        video: { width: { ideal: 1280 }, height: { ideal: 720 } },
        audio: true,
      });
    } catch (error) {
      console.warn("live: camera or microphone unavailable: %s", error?.name, error);
      this.showError(CAMERA_ERROR_MESSAGES[error?.name] ?? CAMERA_ERROR_OTHER);
      return;
    }
    this.video.muted = true;
    this.video.srcObject = this.cameraStream;
    this.playVideo();
    this.updateControls();
  }

  stopCamera() {
    if (this.cameraStream === null) {
      return;
    }
    for (const track of this.cameraStream.getTracks()) {
      track.stop();
    }
    this.cameraStream = null;
    this.video.srcObject = null;
  }

  bindSignaling() {
    const signaling = this.signaling;
    signaling.addEventListener("connection", ({ detail }) => this.showConnection(detail));
    signaling.addEventListener("state", ({ detail }) => this.showState(detail.state));
    signaling.addEventListener("recording", ({ detail }) => this.showRecording(detail));
    signaling.addEventListener("host", ({ detail }) => this.showHost(detail.status));
    signaling.addEventListener("viewers", ({ detail }) => {
      if (this.viewers !== null) {
        this.viewers.textContent = formatViewerCount(detail.count);
      }
    });
    signaling.addEventListener("error", ({ detail }) => {
      this.showError(detail.message);
      if (this.signaling.state !== null) {
        this.status.textContent = this.statusMessage(this.signaling.state);
      }
      this.updateControls();
    });
    signaling.addEventListener("retrying", () => {
      this.offerRetrying = true;
      this.showStatusLine();
    });
    signaling.addEventListener("peer", ({ detail }) => {
      if (detail.peerConnection !== null) {
        // a negotiation succeeded: an error shown before no longer applies
        this.offerRetrying = false;
        this.hideError();
        this.showStatusLine();
      }
    });
    signaling.addEventListener("publishing", () => this.updateControls());
    signaling.addEventListener("fallback", ({ detail }) => {
      clearTimeout(this.noteTimer);
      this.note.textContent = detail.message;
      this.note.hidden = false;
      this.followHls();
    });
    signaling.addEventListener("return", ({ detail }) => this.returnToWebrtc(detail.stream));
    this.hlsPlayer?.addEventListener("error", ({ detail }) => this.showError(detail.message));
    signaling.addEventListener("stream", ({ detail }) => {
      if (!this.isHost) {
        this.video.srcObject = detail.stream;
        this.playVideo();
      }
    });
  }

  bindControls() {
    this.startButton?.addEventListener("click", async () => {
      this.hideError();
      this.startButton.disabled = true;
      this.status.textContent = "Démarrage du live…";
      await this.signaling.publish(this.cameraStream);
      this.updateControls();
    });
    this.endButton?.addEventListener("click", () => {
      if (!confirm("Terminer le live pour tout le monde ?")) {
        return;
      }
      this.hideError();
      this.endButton.disabled = true;
      this.signaling.end();
    });
    this.unmuteButton?.addEventListener("click", () => {
      this.video.muted = false;
      this.unmuteButton.hidden = true;
      this.playVideo();
    });
  }

  /** Plays the HLS stream while the live is on, for a viewer the signaling sent there. */
  async followHls() {
    if (this.hlsPlayer === null || !this.signaling.watchingHls) {
      return;
    }
    if (this.signaling.state !== LiveState.LIVE) {
      this.hlsPlayer.stop();
      this.note.hidden = true;
      return;
    }
    if (!this.hlsPlayer.isPlaying) {
      await this.hlsPlayer.start();
      this.playVideo();
    }
  }

  /** Replaces the HLS stream with `stream`, from a WebRTC connection that already decodes video. */
  returnToWebrtc(stream) {
    this.hlsPlayer?.stop();
    this.video.srcObject = stream;
    this.playVideo();
    this.note.textContent = RETURNED_MESSAGE;
    this.note.hidden = false;
    clearTimeout(this.noteTimer);
    this.noteTimer = setTimeout(() => {
      if (this.note.textContent === RETURNED_MESSAGE) {
        this.note.hidden = true;
      }
    }, RETURNED_NOTE_MS);
  }

  /** Plays the video; when the browser blocks sound without a click, plays it muted. */
  playVideo() {
    this.video.play().catch(() => {
      if (this.isHost || this.video.muted) {
        return;
      }
      this.video.muted = true;
      this.video.play().catch((error) => console.warn("live: video playback blocked", error));
      if (this.unmuteButton !== null) {
        this.unmuteButton.hidden = false;
      }
    });
  }

  showConnection({ status, code }) {
    this.connected = status === "connected";
    if (status === "reconnecting") {
      this.status.textContent = "Connexion perdue, reconnexion…";
    } else if (status === "stopped") {
      this.stopped = true;
      this.showStopped(code);
    }
    this.updateControls();
  }

  showStopped(code) {
    switch (code) {
      case CloseCode.FORBIDDEN:
        this.status.textContent = NOT_REGISTERED_MESSAGE;
        break;
      case CloseCode.NOT_FOUND:
        this.status.textContent = "Ce live n'existe pas ou plus.";
        break;
      case CloseCode.TOO_MANY_ERRORS:
        this.status.textContent = "La connexion au live s'est arrêtée après trop d'erreurs. Rechargez la page.";
        break;
      case CloseCode.NOT_LOGGED_IN:
        this.status.textContent = "Connectez-vous pour continuer.";
        break;
      case CloseCode.REMOVED:
        this.status.textContent = REMOVED_MESSAGE;
        break;
      case CloseCode.TOO_MANY_SOCKETS:
        this.status.textContent = "Ce live est déjà ouvert dans trop d'onglets : fermez-en un, puis rechargez la page.";
        break;
      default:
        this.status.textContent = "La connexion au live est fermée.";
    }
    this.stopCamera();
    if (!this.isHost) {
      this.video.srcObject = null;
    }
  }

  /** Shows viewers that the live resumes while the host is away, instead of a frozen picture. */
  showHost(status) {
    this.hostAway = status === "away";
    this.showStatusLine();
  }

  /** Rewrites the status line of a live on air, which the host's absence or an offer to retry changes. */
  showStatusLine() {
    const state = this.signaling.state;
    if (this.stopped || state !== LiveState.LIVE) {
      return;
    }
    this.status.textContent = this.statusMessage(state);
    this.status.classList.toggle("on-air", !this.isResuming(state));
    this.status.classList.toggle("resuming", this.isResuming(state));
  }

  showState(state) {
    if (state !== LiveState.LIVE) {
      // a new state frame ends the host's absence: the live is back, over or interrupted
      this.hostAway = false;
      this.offerRetrying = false;
    }
    this.status.textContent = this.statusMessage(state);
    this.status.classList.toggle("on-air", state === LiveState.LIVE && !this.isResuming(state));
    this.status.classList.toggle("resuming", this.isResuming(state));
    this.showBadge(state);
    if (this.changeControls !== null) {
      this.changeControls.hidden = !NOT_STARTED_STATES.has(state);
    }
    if (this.viewers !== null) {
      // a live that is over has no viewers, even while their signaling sockets stay open
      this.viewers.hidden = FINISHED_STATES.has(state);
    }
    this.showRecordingLine();
    this.followHls();
    if (FINISHED_STATES.has(state)) {
      // the server answers read_only to any message from now on
      this.chatView.close();
      this.stopCamera();
      if (!this.isHost) {
        this.video.srcObject = null;
      }
      this.showEndCard(state);
    }
    this.updateControls();
  }

  /** Returns whether a viewer waits for the live to come back on air, rather than for its start. */
  isResuming(state) {
    if (this.isHost) {
      return false;
    }
    const waiting = this.hostAway || this.offerRetrying;
    return state === LiveState.INTERRUPTED || (state === LiveState.LIVE && waiting);
  }

  /** Returns the status line for `state`, followed by the recording's sentence once the live ended. */
  statusMessage(state) {
    if (this.isResuming(state)) {
      return RESUMING_MESSAGE;
    }
    const message = STATE_MESSAGES[state] ?? "";
    if (state !== LiveState.ENDED || this.recording === undefined) {
      return message;
    }
    const { status, reason } = this.recording;
    return `${message} ${recordingSentence(state, status, reason)}`;
  }

  /** Replaces the video with the end card, which links the replay once it is ready. */
  showEndCard(state) {
    this.video.hidden = true;
    if (this.unmuteButton !== null) {
      this.unmuteButton.hidden = true;
    }
    this.endTitle.textContent = END_CARD_TITLES[state] ?? "";
    this.endCard.hidden = false;
    const ready =
      state === LiveState.ENDED && this.recording?.status === "ready" && this.replayUrl !== null;
    this.endReplay.hidden = !ready;
    if (ready) {
      this.showPoster();
    }
  }

  /** Puts the ready replay's poster behind the end card; without one, the card stays plain. */
  async showPoster() {
    if (this.posterRequested || this.recordingApi === null) {
      return;
    }
    this.posterRequested = true;
    let posterUrl;
    try {
      const response = await fetch(this.recordingApi, {
        headers: { Accept: "application/json" },
        credentials: "same-origin",
      });
      if (!response.ok) {
        throw new Error(`HTTP ${response.status}`);
      }
      posterUrl = (await response.json()).poster_url ?? null;
    } catch (error) {
      console.warn("live: could not load the poster of the replay", error);
      return;
    }
    if (posterUrl !== null) {
      this.endPoster.addEventListener("load", () => (this.endPoster.hidden = false), { once: true });
      this.endPoster.src = posterUrl;
    }
  }

  showBadge(state) {
    if (this.badge === null || !(state in this.stateLabels)) {
      return;
    }
    this.badge.textContent = this.stateLabels[state];
    this.badge.className = `badge state-${state}`;
    this.badge.classList.toggle("live", state === LiveState.LIVE);
  }

  showRecording({ status, reason }) {
    this.recording = { status, reason };
    this.showRecordingLine();
    // In a welcome frame the recording comes before the state, which showState handles.
    const state = this.signaling.state;
    if (FINISHED_STATES.has(state) && !this.stopped) {
      this.status.textContent = this.statusMessage(state);
      this.showEndCard(state);
    }
  }

  /** Rewrites the page's recording line once the socket reported both state and recording. */
  showRecordingLine() {
    const state = this.signaling.state;
    if (this.recordingLine === null || this.recording === undefined || state === null) {
      return;
    }
    const { status, reason } = this.recording;
    const sentence = recordingSentence(state, status, reason);
    const line = document.createElement("p");
    line.textContent = sentence;
    // as on the server: an ended live always links to its replay page
    const linkText =
      status === "ready" ? "Voir le replay" : state === LiveState.ENDED ? "Page du replay" : null;
    if (linkText !== null && this.replayUrl !== null) {
      const link = document.createElement("a");
      link.href = this.replayUrl;
      link.textContent = linkText;
      line.append(" ", link);
    }
    this.recordingLine.replaceChildren(...(sentence ? [line] : []));
  }

  updateControls() {
    if (!this.isHost) {
      return;
    }
    const state = this.signaling.state;
    const usable = this.connected && !this.stopped && state !== null;
    const resuming = state === LiveState.LIVE || state === LiveState.INTERRUPTED;
    this.startButton.textContent = resuming ? "Reprendre le live" : "Démarrer le live";
    this.startButton.hidden = this.signaling.isPublishing || FINISHED_STATES.has(state);
    this.startButton.disabled =
      !usable || this.cameraStream === null || this.signaling.offerInProgress;
    this.endButton.hidden = !resuming;
    this.endButton.disabled = !usable;
  }

  showError(message) {
    this.error.textContent = message || "Une erreur est survenue.";
    this.error.hidden = false;
  }

  hideError() {
    this.error.textContent = "";
    this.error.hidden = true;
  }
}

const root = document.querySelector("[data-live-stage]");
if (root !== null) {
  const stage = new Stage(root);
  // The end-to-end test reads the viewer's statistics from here.
  window.veillee = {
    stage,
    signaling: stage.signaling,
    chat: stage.chat,
    get peerConnection() {
      return stage.signaling.peerConnection;
    },
    hlsPlayer: stage.hlsPlayer,
  };
  stage.start();
}
