"""WebRTC signaling over WebSockets, the server-side aiortc peers and the media fan-out."""
