"""Serve a live MPEG-TS stream over TCP from a separate process (PyAV holds the GIL while
it waits for a client, so a sender thread would block the reader in the same process).

    python stream_sender.py PORT SESSIONS FRAMES FPS

Each session listens on PORT, sends FRAMES frames (160x120, paced at FPS; 0: as fast as
possible), then closes: a reader sees the stream end and must reconnect for the next one.
"""

from __future__ import annotations

import sys
import time

import av
import numpy as np


def main() -> None:
    port, sessions, frames, fps = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    for session in range(sessions):
        container = av.open(f"tcp://127.0.0.1:{port}?listen=1", mode="w", format="mpegts")
        stream = container.add_stream("mpeg4", rate=int(fps or 30))
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        for index in range(frames):
            pixels = np.full((120, 160, 3), (index * 4 + session * 100) % 255, np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
            if fps:
                time.sleep(1 / fps)
        container.mux(stream.encode(None))
        container.close()
        print(f"session {session} sent", flush=True)


if __name__ == "__main__":
    main()
