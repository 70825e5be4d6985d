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
//                                          reason "live_full" or "unreachable"

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
    // True once a viewer was sent to the HLS stream: it no longer watches over WebRTC.
    this.watchingHls = false;
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
      this.emit("error", { code: "negotiation_failed", message: NEGOTIATION_FAILED_MESSAGE });
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
    if (peerConnection.connectionState === "connected") {
      this.peerConnected = true;
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

  /** Stops watching over WebRTC and emits "fallback", on which the page plays the HLS stream. */
  fallBackToHls(reason, message) {
    console.warn("signaling: watching the HLS stream (%s)", reason);
    this.watchingHls = true;
    this.closePeerConnections();
    this.emit("fallback", { reason, message });
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
