"""Bytes → image blocks Claude accepts, with real Pillow on images made in each test."""

from __future__ import annotations

import asyncio
import base64

import pytest

from slackbot.errors import FileRefused
from slackbot.images import MAX_BASE64_BYTES, ImageBlock, Images, _DecodeLimit
from tests.images import (
    animated_gif,
    decode,
    encode,
    gradient,
    jpeg_with_orientation,
    noise,
    png_claiming_size,
)


@pytest.fixture
def images() -> Images:
    return Images()


async def convert(images: Images, data: bytes, name: str) -> ImageBlock:
    """Both steps, as `Attachments` takes them (with its budget check in between)."""
    return await images.convert(await images.open(data, name))


async def refusal(images: Images, data: bytes, name: str) -> FileRefused:
    with pytest.raises(FileRefused) as refused:
        await convert(images, data, name)
    assert refused.value.name == name
    return refused.value


@pytest.mark.parametrize(
    ("pillow_format", "media_type", "mode"),
    [
        ("PNG", "image/png", "RGBA"),
        ("JPEG", "image/jpeg", "RGB"),
        ("WEBP", "image/webp", "RGB"),
        ("GIF", "image/gif", "P"),
    ],
)
async def test_small_image_is_kept_as_is(
    images: Images, pillow_format: str, media_type: str, mode: str
) -> None:
    body = encode(gradient(320, 200, "RGB").convert(mode), pillow_format)
    name = f"small.{pillow_format.lower()}"

    block = await convert(images, body, name)

    assert block.media_type == media_type
    assert block.name == name
    assert base64.b64decode(block.data) == body
    assert decode(block.data).size == (320, 200)
    assert block.to_claude() == {
        "type": "image",
        "source": {"type": "base64", "media_type": media_type, "data": block.data},
    }


async def test_media_type_comes_from_the_bytes_not_from_the_name(images: Images) -> None:
    """Slack derives the mimetype from the name; Claude rejects a block whose type is wrong."""
    block = await convert(images, encode(gradient(10, 10), "JPEG"), "photo.png")

    assert block.media_type == "image/jpeg"


async def test_bytes_that_are_not_an_image_become_a_note(images: Images) -> None:
    truncated = encode(gradient(300, 300), "PNG")[:500]

    for body in (b"GIF89a but not really", truncated):
        refused = await refusal(images, body, "a.png")
        assert "isn't a valid PNG, JPEG, GIF or WebP image" in refused.text


@pytest.mark.parametrize(
    ("width", "height"),
    [
        (30_000, 30_000),  # Pillow itself raises DecompressionBombError
        (10_000, 10_000),  # Pillow warns (an error under our pytest config)
        (8_000, 7_000),  # below Pillow's limit, above ours
    ],
)
async def test_decompression_bomb_is_refused(images: Images, width: int, height: int) -> None:
    refused = await refusal(images, png_claiming_size(width, height), "bomb.png")

    assert refused.text.startswith("bomb.png is too large to open (")


async def test_large_photo_is_shrunk_to_the_long_edge(images: Images) -> None:
    block = await convert(images, encode(gradient(4000, 3000), "JPEG"), "photo.jpg")

    assert block.media_type == "image/jpeg"
    assert decode(block.data).size == (1568, 1176)


async def test_tall_png_is_shrunk_and_stays_png(images: Images) -> None:
    block = await convert(images, encode(gradient(1500, 4000, "RGBA"), "PNG"), "tall.png")

    assert block.media_type == "image/png"
    image = decode(block.data)
    assert image.size == (588, 1568)
    assert image.mode == "RGBA"


async def test_noisy_png_is_re_encoded_under_the_base64_limit(images: Images) -> None:
    image = noise(2000, 1500, "RGBA")
    image.paste((0, 0, 0, 0), (0, 0, 200, 200))  # a transparent corner
    body = encode(image, "PNG")
    assert len(body) > MAX_BASE64_BYTES

    block = await convert(images, body, "noise.png")

    assert len(block.data) <= MAX_BASE64_BYTES
    assert block.media_type == "image/jpeg"
    result = decode(block.data)
    assert result.size == (1568, 1176)
    corner = result.convert("RGB").getpixel((50, 50))
    assert isinstance(corner, tuple) and min(corner) >= 245  # flattened onto white


async def test_small_animated_gif_is_kept(images: Images) -> None:
    body = animated_gif(100, 80, frames=3)

    block = await convert(images, body, "wave.gif")

    assert (block.media_type, base64.b64decode(block.data)) == ("image/gif", body)


async def test_large_animated_gif_becomes_its_first_frame(images: Images) -> None:
    block = await convert(images, animated_gif(3200, 200, frames=3), "wide.gif")

    assert block.media_type == "image/png"
    image = decode(block.data)
    assert image.size == (1568, 98)
    assert getattr(image, "n_frames", 1) == 1


async def test_exif_orientation_is_applied(images: Images) -> None:
    block = await convert(images, jpeg_with_orientation(200, 100, 6), "phone.jpg")

    image = decode(block.data)
    assert image.size == (100, 200)
    assert image.getexif().get(0x0112) is None


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="max_long_edge"):
        Images(max_long_edge=9000)
    with pytest.raises(ValueError, match="positive"):
        Images(max_concurrent_decodes=0)


async def test_what_decoding_costs_is_read_from_the_header() -> None:
    """A large photo is decoded at a fraction of its size (JPEG draft mode, along both edges);
    an animation kept as is costs every frame."""
    images = Images(max_long_edge=500)

    photo = await images.open(encode(gradient(4000, 3000), "JPEG"), "photo.jpg")
    flat = await images.open(encode(gradient(4000, 3000), "PNG"), "flat.png")
    wave = await Images().open(animated_gif(100, 80, frames=3), "wave.gif")

    assert (photo.as_is, photo.pixels, photo.frame_pixels) == (False, 1000 * 750, 1000 * 750)
    assert (flat.as_is, flat.pixels) == (False, 4000 * 3000)
    assert (wave.as_is, wave.pixels, wave.frame_pixels) == (True, 3 * 8000, 8000)
    assert decode((await images.convert(photo)).data).size == (500, 375)


async def test_decode_limit_weighs_pixels_and_serves_in_order() -> None:
    limit = _DecodeLimit(max_decodes=2, max_pixels=100)
    order: list[str] = []
    release: dict[str, asyncio.Event] = {}

    async def decode(name: str, pixels: int) -> None:
        release[name] = asyncio.Event()
        async with limit.hold(pixels):
            order.append(name)
            await release[name].wait()

    async def settle() -> None:
        for _ in range(5):
            await asyncio.sleep(0)

    tasks = {
        name: asyncio.create_task(decode(name, pixels))
        for name, pixels in [("big", 80), ("huge", 500), ("small", 10), ("tiny", 1)]
    }
    await settle()
    assert order == ["big"]  # "huge" (run alone, as if 100) waits, and so does everyone after it
    tasks["small"].cancel()  # a waiter that gives up leaves no hole
    release["big"].set()
    await settle()
    assert order == ["big", "huge"]
    release["huge"].set()
    await settle()
    assert order == ["big", "huge", "tiny"]
    release["tiny"].set()
    await asyncio.gather(*tasks.values(), return_exceptions=True)
    async with limit.hold(100):  # everything was given back
        pass
