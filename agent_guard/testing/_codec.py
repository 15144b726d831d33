"""The simulator's speech: a sine tone, encoded the way a TTS API would send it.

``livekit.plugins.openai.TTS`` asks for ``response_format="mp3"`` unless told otherwise and
decodes whatever comes back (PyAV for compressed formats, an inline parser for WAV, nothing
for PCM), so the simulator answers with real audio in the requested format instead of bytes
that only look right.
"""

from __future__ import annotations

import io
import wave

import av
import numpy as np

__all__ = ["SAMPLE_RATE", "UnsupportedFormatError", "encode", "sine_tone"]

SAMPLE_RATE = 24_000
"""What OpenAI's ``/v1/audio/speech`` produces (``livekit.plugins.openai.tts.SAMPLE_RATE``)."""

_AMPLITUDE = 0.3
_FADE_SECONDS = 0.01

# response_format -> (libav container, libav encoder, Content-Type). Every Content-Type is one
# that livekit.plugins.openai.tts.DECODABLE_CONTENT_TYPES maps back to the same container.
_COMPRESSED: dict[str, tuple[str, str, str]] = {
    "mp3": ("mp3", "libmp3lame", "audio/mpeg"),
    "aac": ("adts", "aac", "audio/aac"),
    "flac": ("flac", "flac", "audio/flac"),
    "opus": ("ogg", "libopus", "audio/opus"),
}


class UnsupportedFormatError(ValueError):
    """The request asked for a ``response_format`` the simulator cannot produce."""


def sine_tone(seconds: float, frequency: float, *, sample_rate: int = SAMPLE_RATE) -> bytes:
    """A mono 16-bit little-endian sine tone.

    A 10 ms fade at both ends keeps the edges click-free, so every frame but the first and
    last few milliseconds has the same level and frames stay comparable across formats.
    """
    count = max(round(seconds * sample_rate), 1)
    signal = _AMPLITUDE * np.sin(2 * np.pi * frequency * np.arange(count) / sample_rate)
    fade = min(int(_FADE_SECONDS * sample_rate), count // 2)
    if fade:
        ramp = np.linspace(0.0, 1.0, fade)
        signal[:fade] *= ramp
        signal[-fade:] *= ramp[::-1]
    return (signal * 32767).astype("<i2").tobytes()


def encode(
    pcm: bytes, response_format: str, *, sample_rate: int = SAMPLE_RATE
) -> tuple[bytes, str]:
    """Encode mono 16-bit PCM as ``response_format``.

    Returns:
        The encoded bytes and their Content-Type.

    Raises:
        UnsupportedFormatError: ``response_format`` is not pcm, wav, mp3, aac, flac or opus.
    """
    if response_format == "pcm":
        return pcm, "audio/pcm"
    if response_format == "wav":
        buffer = io.BytesIO()
        with wave.open(buffer, "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(sample_rate)
            wav.writeframes(pcm)
        return buffer.getvalue(), "audio/wav"
    if response_format not in _COMPRESSED:
        raise UnsupportedFormatError(f"unsupported response_format: {response_format!r}")

    container_format, codec, content_type = _COMPRESSED[response_format]
    samples = np.frombuffer(pcm, dtype="<i2").reshape(1, -1)
    frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
    frame.sample_rate = sample_rate
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=container_format) as container:
        stream = container.add_stream(codec, rate=sample_rate, layout="mono")
        assert isinstance(stream, av.AudioStream)  # a str codec name types as "any stream"
        # PyAV converts the s16 frame to the encoder's sample format and frame size itself.
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue(), content_type
