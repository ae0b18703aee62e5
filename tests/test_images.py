"""Bytes → image blocks Claude accepts, with real Pillow on images made in each test."""

from __future__ import annotations

import base64

import pytest

from slackbot.errors import FileRefused
from slackbot.images import MAX_BASE64_BYTES, Images
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


async def refusal(images: Images, data: bytes, name: str) -> FileRefused:
    with pytest.raises(FileRefused) as refused:
        await images.convert(data, name)
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

    block = await images.convert(body, name)

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
    block = await images.convert(encode(gradient(10, 10), "JPEG"), "photo.png")

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
    block = await images.convert(encode(gradient(4000, 3000), "JPEG"), "photo.jpg")

    assert block.media_type == "image/jpeg"
    assert decode(block.data).size == (1568, 1176)


async def test_tall_png_is_shrunk_and_stays_png(images: Images) -> None:
    block = await images.convert(encode(gradient(1500, 4000, "RGBA"), "PNG"), "tall.png")

    assert block.media_type == "image/png"
    image = decode(block.data)
    assert image.size == (588, 1568)
    assert image.mode == "RGBA"


async def test_noisy_png_is_re_encoded_under_the_base64_limit(images: Images) -> None:
    image = noise(2000, 1500, "RGBA")
    image.paste((0, 0, 0, 0), (0, 0, 200, 200))  # a transparent corner
    body = encode(image, "PNG")
    assert len(body) > MAX_BASE64_BYTES

    block = await images.convert(body, "noise.png")

    assert len(block.data) <= MAX_BASE64_BYTES
    assert block.media_type == "image/jpeg"
    result = decode(block.data)
    assert result.size == (1568, 1176)
    corner = result.convert("RGB").getpixel((50, 50))
    assert isinstance(corner, tuple) and min(corner) >= 245  # flattened onto white


async def test_small_animated_gif_is_kept(images: Images) -> None:
    body = animated_gif(100, 80, frames=3)

    block = await images.convert(body, "wave.gif")

    assert (block.media_type, base64.b64decode(block.data)) == ("image/gif", body)


async def test_large_animated_gif_becomes_its_first_frame(images: Images) -> None:
    block = await images.convert(animated_gif(3200, 200, frames=3), "wide.gif")

    assert block.media_type == "image/png"
    image = decode(block.data)
    assert image.size == (1568, 98)
    assert getattr(image, "n_frames", 1) == 1


async def test_exif_orientation_is_applied(images: Images) -> None:
    block = await images.convert(jpeg_with_orientation(200, 100, 6), "phone.jpg")

    image = decode(block.data)
    assert image.size == (100, 200)
    assert image.getexif().get(0x0112) is None


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="max_long_edge"):
        Images(max_long_edge=9000)
    with pytest.raises(ValueError, match="positive"):
        Images(max_concurrent_decodes=0)
