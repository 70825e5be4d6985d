// Client side of the signaling socket, /ws/live/{id}/signaling: the live's state,
// the host's publishing and the viewer's watching (docs/protocol.md).
//
// LiveSignaling dispatches these events, each with its data in `detail`:
//   "state"        {state}                 the live's state, from welcome or a state frame
//   "recording"    {status, reason}        the recording's status
//   "viewers"      {count}                 connected viewers, for the host
//   "host"         {status}                "away" while the host's media is cut, then "back";
//                                          from welcome, "away" or "present"
//   "stream"       {stream}                the MediaStream received by a viewer
//   "peer"         {peerConnection}        the current peer connection, or null
//   "publishing"   {publishing}            whether the host's media is being sent
//   "error"        {code, message}         an error frame, or a local failure in French
//   "retrying"     {code}                  an offer rejected with `try_again`, sent again soon
//   "connection"   {status, code}          "connected", "reconnecting" or "stopped"
//   "fallback"     {reason, message}       a viewer should watch the HLS stream instead:
//                                          reason "live_full" or "unreachable"; sent again
//                                          only when the reason changes
//   "return"       {stream}                a viewer on the HLS stream has a WebRTC stream
//                                          again, already decoding video: the page
//                                          shows `stream` and stops the HLS stream

import { createPublisherConnection, createViewerConnection, withDeclaredDownlink } from "./peer.js";
import { ReconnectingSocket } from "./socket.js";

export const LiveState = Object.freeze({
  SCHEDULED: "scheduled",
  OPEN: "open",
  LIVE: "live",
  ENDED: "ended",
  CANCELLED: "cancelled",
  INTERRUPTED: "interrupted",
});

// States in which nothing will be broadcast again.
const FINAL_STATES = new Set([LiveState.ENDED, LiveState.CANCELLED]);

// After a `try_again` answer to an offer, the page offers again this much later: the
// server was shutting down, or the live's media process did not reply in time.
const OFFER_RETRY_DELAY_MS = 2000;
// A host's publish answered with `already_publishing` is tried again this many times,
// OFFER_RETRY_DELAY_MS apart. The server holds the peer of a host whose socket's
// process died until it notices the death, within about 10 s; a second tab that
// really publishes gives up after that.
const ALREADY_PUBLISHING_RETRIES = 6;

const NEGOTIATION_FAILED_MESSAGE =
  "La connexion vidéo n'a pas pu être établie. Vérifiez votre réseau puis réessayez.";
const UNREACHABLE_MESSAGE =
  "La connexion vidéo directe n'a pas pu s'établir : vous regardez le live en léger différé.";
// A viewer's peer connection that has not connected this long after the answer will
// not: ICE checks between reachable addresses take a few seconds at most. The viewer
// then watches the HLS stream.
const VIEWER_CONNECT_TIMEOUT_MS = 20_000;
// A viewer on the HLS stream sends `watch` again after these delays, doubled after
// each failed try up to the maximum, so that it returns to WebRTC once a place is
// free or the network lets WebRTC through. A viewer sent away by `live_full` tries
// often. One whose WebRTC could not connect tries rarely, since each try may hold a
// server peer for up to VIEWER_CONNECT_TIMEOUT_MS.
const RETURN_DELAYS_MS = Object.freeze({
  live_full: { first: 10_000, max: 60_000 },
  unreachable: { first: 120_000, max: 600_000 },
});
// Each delay is drawn between this fraction of its nominal value and the whole of it,
// so that the HLS viewers of a full live do not all send `watch` when one place frees.
const RETURN_JITTER_MIN_FRACTION = 0.5;
// A connection tried from the HLS stream replaces it only once it has decoded a video
// frame. One that has not decoded any this long after connecting is closed, and the
// viewer stays on HLS. The server sends a new viewer a keyframe within a second.
const RETURN_FIRST_FRAME_TIMEOUT_MS = 10_000;
const RETURN_FRAME_POLL_MS = 200;

/** Resolves to the video frames that `peerConnection` has decoded, 0 before any. */
async function framesDecoded(peerConnection) {
  let stats;
  try {
    stats = await peerConnection.getStats();
  } catch {
    // a closed connection rejects; the caller sees that it was replaced
    return 0;
  }
  for (const report of stats.values()) {
    if (report.type === "inbound-rtp" && report.kind === "video") {
      return report.framesDecoded ?? 0;
    }
  }
  return 0;
}

export class LiveSignaling extends EventTarget {
  /** `path` is the signaling socket's path; `isHost` is true on the host's page, which publishes. */
  constructor(path, isHost) {
    super();
    this.isHost = isHost;
    this.role = null;
    this.state = null;
    this.iceServers = [];
    this.peerConnection = null;
    // The connection whose offer was sent and whose answer is awaited.
    this.pendingPeerConnection = null;
    // True from the start of an offer's creation until its answer or its rejection.
    this.offerInProgress = false;
    this.cameraStream = null;
    // True from the host's "Démarrer" until the live ends: after a reconnection, or
    // when the peer connection fails, the page publishes again.
    this.wantsToPublish = false;
    // True while a viewer watches the HLS stream; WebRTC is then only tried in the
    // background, and replaces the HLS stream once it decodes video.
    this.watchingHls = false;
    // Why the viewer watches the HLS stream ("live_full" or "unreachable"), or null.
    this.hlsReason = null;
    // The try to return to WebRTC: its timer, its current nominal delay, and the
    // stream of its connection while one is being negotiated or checked.
    this.returnTimer = null;
    this.returnDelayMs = null;
    this.returnStream = null;
    // Tries from the HLS stream that failed, for the logs and the browser tests.
    this.failedReturns = 0;
    this.connectTimer = null;
    // Whether the current peer connection has reached "connected" once.
    this.peerConnected = false;
    this.offerRetryTimer = null;
    this.alreadyPublishingRetries = 0;
    this.socket = new ReconnectingSocket(path, {
      onOpen: () => this.emit("connection", { status: "connected", code: null }),
      onFrame: (frame) => this.handleFrame(frame),
      onReconnecting: (code) => {
        // The server closes the peer of a socket that closes, the host's included,
        // so after the next welcome the host publishes again and a viewer watches again.
        this.closePeerConnections();
        this.emit("connection", { status: "reconnecting", code });
      },
      onStop: (code) => {
        this.closePeerConnections();
        this.emit("connection", { status: "stopped", code });
      },
    });
  }

  start() {
    this.socket.start();
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  get isPublishing() {
    return this.isHost && this.peerConnection !== null;
  }

  /** Starts sending `cameraStream` to the server; the host's "Démarrer le live". */
  async publish(cameraStream) {
    this.cameraStream = cameraStream;
    this.wantsToPublish = true;
    await this.sendOffer("publish", () =>
      createPublisherConnection(cameraStream, this.iceServers),
    );
  }

  /** Asks the server to end the live; the host's "Terminer le live". */
  end() {
    this.wantsToPublish = false;
    if (!this.socket.send({ type: "end" })) {
      this.emit("error", {
        code: "disconnected",
        message: "La connexion au serveur est perdue : réessayez dans un instant.",
      });
    }
  }

  async watch() {
    const stream = new MediaStream();
    const sent = await this.sendOffer("watch", () =>
      createViewerConnection(this.iceServers, stream),
    );
    if (sent) {
      this.emit("stream", { stream });
    }
  }

  /** True while a connection tried from the HLS stream is negotiated or checked. */
  get isReturning() {
    return this.returnStream !== null;
  }

  /** Sends `watch` for a connection that replaces the HLS stream once it decodes video. */
  async tryReturn() {
    if (!this.watchingHls || this.state !== LiveState.LIVE || this.isReturning) {
      this.scheduleReturn();
      return;
    }
    if (this.peerConnection !== null || this.offerInProgress) {
      this.scheduleReturn();
      return;
    }
    console.info("signaling: trying WebRTC again from the HLS stream (%s)", this.hlsReason);
    const stream = new MediaStream();
    this.returnStream = stream;
    const sent = await this.sendOffer("watch", () =>
      createViewerConnection(this.iceServers, stream),
    );
    if (!sent && this.returnStream === stream) {
      this.returnFailed("the offer could not be sent");
    }
  }

  /** Plans the next try to return to WebRTC, after a jittered delay. */
  scheduleReturn() {
    clearTimeout(this.returnTimer);
    this.returnTimer = null;
    if (!this.watchingHls || FINAL_STATES.has(this.state)) {
      return;
    }
    const delays = RETURN_DELAYS_MS[this.hlsReason] ?? RETURN_DELAYS_MS.unreachable;
    if (this.returnDelayMs === null) {
      this.returnDelayMs = delays.first;
    }
    const fraction = RETURN_JITTER_MIN_FRACTION + Math.random() * (1 - RETURN_JITTER_MIN_FRACTION);
    this.returnTimer = setTimeout(() => {
      this.returnTimer = null;
      this.tryReturn();
    }, this.returnDelayMs * fraction);
  }

  /** Drops the connection tried from the HLS stream, which keeps playing, and plans the next try. */
  returnFailed(cause) {
    this.failedReturns += 1;
    console.info(
      "signaling: staying on the HLS stream: %s (%d tries failed)",
      cause,
      this.failedReturns,
    );
    this.returnStream = null;
    this.closePeerConnections();
    const delays = RETURN_DELAYS_MS[this.hlsReason] ?? RETURN_DELAYS_MS.unreachable;
    this.returnDelayMs =
      this.returnDelayMs === null ? delays.first : Math.min(this.returnDelayMs * 2, delays.max);
    this.scheduleReturn();
  }

  /**
   * Waits until the connection tried from the HLS stream decodes a video frame, then
   * emits "return" with its stream. Without a frame in time, the try fails.
   */
  async completeReturn(peerConnection) {
    const deadline = performance.now() + RETURN_FIRST_FRAME_TIMEOUT_MS;
    while (performance.now() < deadline) {
      if (peerConnection !== this.peerConnection || !this.isReturning) {
        return;
      }
      if ((await framesDecoded(peerConnection)) > 0) {
        break;
      }
      await new Promise((resolve) => setTimeout(resolve, RETURN_FRAME_POLL_MS));
    }
    if (peerConnection !== this.peerConnection || !this.isReturning) {
      return;
    }
    if ((await framesDecoded(peerConnection)) <= 0) {
      this.returnFailed(`no video frame ${RETURN_FIRST_FRAME_TIMEOUT_MS} ms after connecting`);
      return;
    }
    const stream = this.returnStream;
    console.info("signaling: back on WebRTC after the HLS stream (%s)", this.hlsReason);
    this.returnStream = null;
    this.stopWatchingHls();
    this.emit("return", { stream });
  }

  stopWatchingHls() {
    clearTimeout(this.returnTimer);
    this.returnTimer = null;
    this.returnDelayMs = null;
    this.watchingHls = false;
    this.hlsReason = null;
  }

  /**
   * Creates a peer connection with `createConnection` and sends its offer in a
   * `type` frame; returns whether the offer was sent. The answer is applied when
   * it arrives, in handleAnswer.
   */
  async sendOffer(type, createConnection) {
    if (this.offerInProgress) {
      return false;
    }
    this.offerInProgress = true;
    let peerConnection;
    try {
      peerConnection = await createConnection();
    } catch (error) {
      this.offerInProgress = false;
      console.error("signaling: could not create the %s offer", type, error);
      if (!this.isReturning) {
        // a try from the HLS stream fails quietly: the HLS stream plays on
        this.emit("error", { code: "negotiation_failed", message: NEGOTIATION_FAILED_MESSAGE });
      }
      return false;
    }

    let sdp = peerConnection.localDescription.sdp;
    if (type === "watch") {
      sdp = withDeclaredDownlink(sdp);
    }
    if (!this.socket.send({ type, sdp })) {
      peerConnection.close();
      this.offerInProgress = false;
      return false;
    }
    this.pendingPeerConnection = peerConnection;
    return true;
  }

  async handleAnswer(sdp) {
    const peerConnection = this.pendingPeerConnection;
    if (peerConnection === null) {
      console.warn("signaling: ignored an answer that no offer is waiting for");
      return;
    }
    this.pendingPeerConnection = null;
    this.offerInProgress = false;
    this.alreadyPublishingRetries = 0;
    try {
      await peerConnection.setRemoteDescription({ type: "answer", sdp });
    } catch (error) {
      console.error("signaling: the server's answer could not be applied", error);
      peerConnection.close();
      if (this.isReturning) {
        this.returnFailed("the answer could not be applied");
        return;
      }
      this.emit("error", { code: "negotiation_failed", message: NEGOTIATION_FAILED_MESSAGE });
      return;
    }

    if (this.peerConnection !== null) {
      this.peerConnection.close();
    }
    this.peerConnection = peerConnection;
    this.peerConnected = false;
    peerConnection.addEventListener("connectionstatechange", () =>
      this.handleConnectionState(peerConnection),
    );
    this.emit("peer", { peerConnection });
    if (this.isHost) {
      this.emit("publishing", { publishing: true });
    } else {
      clearTimeout(this.connectTimer);
      this.connectTimer = setTimeout(() => {
        if (peerConnection === this.peerConnection && peerConnection.connectionState !== "connected") {
          this.fallBackToHls("unreachable", UNREACHABLE_MESSAGE);
        }
      }, VIEWER_CONNECT_TIMEOUT_MS);
    }
  }

  /** Starts over when the media path fails while the socket is still up. */
  handleConnectionState(peerConnection) {
    if (peerConnection !== this.peerConnection) {
      return;
    }
    if (peerConnection.connectionState === "connected" && !this.peerConnected) {
      this.peerConnected = true;
      if (this.isReturning) {
        this.completeReturn(peerConnection);
      }
    }
    if (peerConnection.connectionState !== "failed") {
      return;
    }
    if (!this.isHost && !this.peerConnected) {
      // never connected: the network lets no WebRTC through
      this.fallBackToHls("unreachable", UNREACHABLE_MESSAGE);
      return;
    }
    console.warn("signaling: the peer connection failed, negotiating a new one");
    this.closePeerConnections();
    this.negotiateIfNeeded();
  }

  /** Publishes again (host) or watches (viewer) when the live state calls for it. */
  negotiateIfNeeded() {
    if (this.peerConnection !== null || this.offerInProgress) {
      return;
    }
    if (this.isHost) {
      const resumable = this.state !== null && !FINAL_STATES.has(this.state);
      if (this.wantsToPublish && this.cameraStream !== null && resumable) {
        this.publish(this.cameraStream);
      }
      return;
    }
    if (this.state === LiveState.LIVE && !this.watchingHls) {
      this.watch();
    }
  }

  /**
   * Stops watching over WebRTC and emits "fallback", on which the page plays the HLS
   * stream. For a viewer already on it, whose try to return failed, plans the next
   * try and emits "fallback" only if the reason changed.
   */
  fallBackToHls(reason, message) {
    const previousReason = this.hlsReason;
    this.hlsReason = reason;
    if (this.watchingHls) {
      if (reason !== previousReason) {
        // the other reason's delays apply from their start
        this.returnDelayMs = null;
        this.emit("fallback", { reason, message });
      }
      this.returnFailed(reason);
      return;
    }
    console.warn("signaling: watching the HLS stream (%s)", reason);
    this.watchingHls = true;
    this.closePeerConnections();
    this.emit("fallback", { reason, message });
    this.scheduleReturn();
  }

  /** Offers again after OFFER_RETRY_DELAY_MS, once, if the live still calls for it. */
  retryOfferLater() {
    if (this.offerRetryTimer !== null) {
      return;
    }
    this.offerRetryTimer = setTimeout(() => {
      this.offerRetryTimer = null;
      this.negotiateIfNeeded();
    }, OFFER_RETRY_DELAY_MS);
  }

  closePeerConnections() {
    clearTimeout(this.connectTimer);
    if (this.isReturning) {
      // the try ends with its connection, the HLS stream plays on, and the next try
      // keeps the current delay
      this.returnStream = null;
      if (this.returnTimer === null) {
        this.scheduleReturn();
      }
    }
    const hadPeerConnection = this.peerConnection !== null;
    if (this.peerConnection !== null) {
      this.peerConnection.close();
      this.peerConnection = null;
    }
    this.abandonPendingOffer();
    if (hadPeerConnection) {
      this.emit("peer", { peerConnection: null });
      if (this.isHost) {
        this.emit("publishing", { publishing: false });
      }
    }
  }

  /** Closes the connection whose answer is awaited: its socket is gone, so no answer will come. */
  abandonPendingOffer() {
    if (this.pendingPeerConnection !== null) {
      this.pendingPeerConnection.close();
      this.pendingPeerConnection = null;
      this.offerInProgress = false;
    }
    // An offer still being created is left alone: it is sent on whichever
    // socket is open once ICE gathering completes, or dropped if none is.
  }

  handleFrame(frame) {
    switch (frame.type) {
      case "welcome":
        this.role = frame.role;
        this.iceServers = Array.isArray(frame.ice_servers) ? frame.ice_servers : [];
        this.handleRecording(frame.recording);
        // before the state, whose status line shows whether the live waits for its host
        this.emit("host", { status: frame.host });
        this.handleState(frame.state);
        break;
      case "state":
        this.handleState(frame.state);
        break;
      case "answer":
        this.handleAnswer(frame.sdp);
        break;
      case "recording":
        this.handleRecording(frame);
        break;
      case "viewers":
        this.emit("viewers", { count: frame.count });
        break;
      case "host":
        this.emit("host", { status: frame.status });
        break;
      case "error":
        this.handleError(frame);
        break;
      case "pong":
        break;
      default:
        console.warn("signaling: ignored a frame of unknown type %s", frame.type);
    }
  }

  handleState(state) {
    const previous = this.state;
    this.state = state;
    const leftLive = previous === LiveState.LIVE && state !== LiveState.LIVE;
    // An interrupted live lost the server process that carried its media, and the
    // host's peer connection with it: the host publishes again, through any process.
    const mediaLost = leftLive && (!this.isHost || state === LiveState.INTERRUPTED);
    if (FINAL_STATES.has(state) || mediaLost) {
      this.closePeerConnections();
    }
    if (FINAL_STATES.has(state)) {
      this.wantsToPublish = false;
    }
    this.emit("state", { state });
    this.negotiateIfNeeded();
  }

  handleRecording(recording) {
    if (recording === null || typeof recording !== "object") {
      return;
    }
    this.emit("recording", { status: recording.status ?? null, reason: recording.reason ?? null });
  }

  handleError(frame) {
    const pending = this.pendingPeerConnection;
    const negotiationErrors = [
      "invalid_sdp",
      "not_live",
      "live_ended",
      "already_publishing",
      "forbidden",
      "live_full",
      "try_again",
    ];
    if (pending !== null && negotiationErrors.includes(frame.code)) {
      // the offer was rejected, so no answer will come for it
      pending.close();
      this.pendingPeerConnection = null;
      this.offerInProgress = false;
    }
    if (frame.code === "live_full") {
      this.fallBackToHls("live_full", frame.message);
      return;
    }
    if (this.isReturning && pending !== null && negotiationErrors.includes(frame.code)) {
      // a try from the HLS stream was rejected: the HLS stream plays on, and a state
      // frame reports a live that ended
      this.returnFailed(`watch rejected with ${frame.code}`);
      return;
    }
    if (frame.code === "not_live" && !this.isHost) {
      // the viewer watches again once a state frame reports the live as started
      return;
    }
    if (frame.code === "try_again" && pending !== null) {
      // the page offers again by itself, so this is no error to show
      this.retryOfferLater();
      this.emit("retrying", { code: frame.code });
      return;
    }
    if (frame.code === "already_publishing" && pending !== null) {
      this.alreadyPublishingRetries += 1;
      if (this.alreadyPublishingRetries <= ALREADY_PUBLISHING_RETRIES) {
        this.retryOfferLater();
      }
    }
    this.emit("error", { code: frame.code, message: frame.message });
  }
}
