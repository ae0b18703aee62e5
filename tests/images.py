"""Images made in the test that needs them, so the repository holds no binary fixtures and each
test shows exactly what it feeds the code."""

from __future__ import annotations

import base64
import io
import random
import struct
import zlib
from typing import Any

from PIL import Image


def encode(image: Image.Image, pillow_format: str, **options: Any) -> bytes:
    """Saves `image` in memory, as Slack would store an upload."""
    buffer = io.BytesIO()
    image.save(buffer, format=pillow_format, **options)
    return buffer.getvalue()


def gradient(width: int, height: int, mode: str = "RGB") -> Image.Image:
    """A smooth image: compresses well, so size limits are not what a test exercises."""
    ramp = Image.linear_gradient("L").resize((width, height))
    if mode == "L":
        return ramp
    image = Image.merge(
        "RGB", (ramp, ramp.transpose(Image.Transpose.ROTATE_90).resize(ramp.size), ramp)
    )
    return image.convert(mode)


def noise(width: int, height: int, mode: str = "RGB", seed: int = 0) -> Image.Image:
    """Random pixels: incompressible, so PNG stays about as large as the raw pixels."""
    channels = len(mode)
    data = random.Random(seed).randbytes(width * height * channels)
    return Image.frombytes(mode, (width, height), data)


def animated_gif(width: int, height: int, frames: int) -> bytes:
    """An animated GIF whose frames differ, so Pillow keeps them all."""
    images = [
        Image.new("RGB", (width, height), (index * 60 % 256, 255 - index * 60 % 256, 0)).convert(
            "P"
        )
        for index in range(frames)
    ]
    return encode(images[0], "GIF", save_all=True, append_images=images[1:], duration=100, loop=0)


def png_claiming_size(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims `width`×`height`: a decompression bomb's first bytes,
    without spending memory to make a real one."""
    png = encode(Image.new("1", (1, 1)), "PNG")
    ihdr_start = 8  # after the signature: length (4), type (4), data (13), crc (4)
    length, chunk_type = struct.unpack(">I4s", png[ihdr_start : ihdr_start + 8])
    assert chunk_type == b"IHDR" and length == 13
    data = struct.pack(">II", width, height) + png[ihdr_start + 16 : ihdr_start + 8 + length]
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + data))
    return (
        png[:ihdr_start] + struct.pack(">I", length) + b"IHDR" + data + crc + png[ihdr_start + 25 :]
    )


def jpeg_with_orientation(width: int, height: int, orientation: int) -> bytes:
    """A JPEG as phones write it: pixels stored sideways plus an EXIF orientation tag."""
    image = gradient(width, height)
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(image, "JPEG", exif=exif.tobytes())


def decode(data_base64: str) -> Image.Image:
    """Decodes an ImageBlock's data fully, as Claude would."""
    image = Image.open(io.BytesIO(base64.b64decode(data_base64, validate=True)))
    image.load()
    return image


def solid_png(width: int, height: int, colour: tuple[int, int, int] = (200, 30, 60)) -> bytes:
    """A single-colour RGB PNG, compressed row by row: a 7000×7000 one is ~150 kB and costs no
    memory to make, yet decodes to ~200 MB in Pillow, like a decompression-amplification upload."""
    row = b"\x00" + bytes(colour) * width  # filter type 0, then the pixels
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    signature = b"\x89PNG\r\n\x1a\n"
    return signature + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
