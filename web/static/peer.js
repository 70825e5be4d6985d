// Peer connections between this browser and the live's server-side aiortc peer.
// ICE is not trickled: each offer is sent once gathering is complete, so that its
// SDP carries every candidate (docs/protocol.md, "Signaling socket").

// Host candidates on a local interface gather in milliseconds; a configured TURN
// server may take a few seconds. Past this delay the offer goes out with the
// candidates found so far rather than never.
const ICE_GATHERING_TIMEOUT_MS = 10_000;

/** Resolves once `peerConnection` has finished gathering ICE candidates, or on timeout. */
export function waitForIceGatheringComplete(peerConnection, timeoutMs = ICE_GATHERING_TIMEOUT_MS) {
  if (peerConnection.iceGatheringState === "complete") {
    return Promise.resolve();
  }
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      peerConnection.removeEventListener("icegatheringstatechange", onChange);
      console.warn("peer: ICE gathering not complete after %d ms, sending the offer as is", timeoutMs);
      resolve();
    }, timeoutMs);
    function onChange() {
      if (peerConnection.iceGatheringState === "complete") {
        clearTimeout(timer);
        peerConnection.removeEventListener("icegatheringstatechange", onChange);
        resolve();
      }
    }
    peerConnection.addEventListener("icegatheringstatechange", onChange);
  });
}

/**
 * Creates the host's peer connection, which sends the audio and video tracks of
 * `stream` (sendonly), and sets its offer once ICE gathering is complete.
 * `iceServers` is the server's list from `welcome`, passed on unchanged.
 */
export async function createPublisherConnection(stream, iceServers) {
  const peerConnection = new RTCPeerConnection({ iceServers });
  for (const kind of ["audio", "video"]) {
    const track = stream.getTracks().find((candidate) => candidate.kind === kind);
    if (track === undefined) {
      peerConnection.close();
      throw new Error(`the camera stream has no ${kind} track`);
    }
    peerConnection.addTransceiver(track, { direction: "sendonly", streams: [stream] });
  }

  await peerConnection.setLocalDescription(await peerConnection.createOffer());
  await waitForIceGatheringComplete(peerConnection);
  return peerConnection;
}

/**
 * Creates a viewer's peer connection with one recvonly audio and one recvonly video
 * transceiver, and sets its offer once ICE gathering is complete. The received
 * tracks are added to `stream` as they arrive.
 */
export async function createViewerConnection(iceServers, stream) {
  const peerConnection = new RTCPeerConnection({ iceServers });
  peerConnection.addTransceiver("audio", { direction: "recvonly" });
  peerConnection.addTransceiver("video", { direction: "recvonly" });
  peerConnection.addEventListener("track", (event) => {
    for (const old of stream.getTracks().filter((track) => track.kind === event.track.kind)) {
      stream.removeTrack(old);
    }
    stream.addTrack(event.track);
  });

  await peerConnection.setLocalDescription(await peerConnection.createOffer());
  await waitForIceGatheringComplete(peerConnection);
  return peerConnection;
}

/**
 * Returns `sdp` with the link's downlink, as the browser estimates it
 * (`navigator.connection.downlink`, in Mbit/s), declared as `b=AS` (kbit/s) in the
 * video section, so that the server starts the video at a quality the link carries
 * (docs/protocol.md, `watch`). Without that estimate, `sdp` goes unchanged. Only the
 * text sent to the server carries the line; the local description keeps its own.
 */
export function withDeclaredDownlink(sdp) {
  const downlinkMbps = navigator.connection?.downlink;
  if (typeof downlinkMbps !== "number" || !(downlinkMbps > 0)) {
    return sdp;
  }
  const lines = sdp.split("\r\n");
  const video = lines.findIndex((line) => line.startsWith("m=video"));
  if (video < 0) {
    return sdp;
  }
  // a section's b= lines follow its c= line
  let connection = video + 1;
  while (connection < lines.length && !lines[connection].startsWith("m=")) {
    if (lines[connection].startsWith("c=")) {
      lines.splice(connection + 1, 0, `b=AS:${Math.round(downlinkMbps * 1000)}`);
      return lines.join("\r\n");
    }
    connection += 1;
  }
  return sdp;
}
