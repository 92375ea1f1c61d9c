"""STOW-RS request parsing: Content-Type checks and multipart parts streamed in small chunks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from triage.api.errors import BadRequest, UnsupportedMediaType
from triage.api.stow import Part, boundary_of, iter_parts

BOUNDARY = b"XyZ-boundary"


def _body(parts: list[tuple[bytes, bytes]]) -> bytes:
    out = b"preamble to ignore\r\n"
    for headers, data in parts:
        out += b"--" + BOUNDARY + b"\r\n" + headers + b"\r\n\r\n" + data + b"\r\n"
    return out + b"--" + BOUNDARY + b"--\r\n"


async def _chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def _parse(data: bytes, size: int) -> list[Part]:
    async def run() -> list[Part]:
        return [p async for p in iter_parts(_chunks(data, size), BOUNDARY)]

    return asyncio.run(run())


@pytest.mark.parametrize("chunk", [1, 7, 64, 1 << 20])
def test_parts_are_rebuilt_exactly_whatever_the_chunking(chunk: int) -> None:
    binary = bytes(range(256)) * 5 + b"\r\n--XyZ-boundar" + b"\r\n\r\n"  # near-boundary bytes
    body = _body(
        [
            (b"Content-Type: application/dicom", binary),
            (b"content-type: Application/DICOM; transfer-syntax=1.2.840.10008.1.2.1", b"DICM"),
            (b"Content-Type: text/plain", b"hello"),
            (b"Content-ID: <no-type>", b"x"),
        ]
    )
    parts = _parse(body, chunk)
    assert [p.media_type for p in parts] == [
        "application/dicom",
        "application/dicom",
        "text/plain",
        "application/dicom",  # no Content-Type: the request's type parameter applies
    ]
    assert [p.data for p in parts] == [binary, b"DICM", b"hello", b"x"]


def test_a_truncated_body_yields_the_complete_parts_then_is_a_bad_request() -> None:
    body = _body([(b"Content-Type: application/dicom", b"first")])
    truncated = body[: -len(b"--\r\n")] + b"\r\nContent-Type: application/dicom\r\n\r\nhal"
    seen: list[bytes] = []

    async def run() -> None:
        async for part in iter_parts(_chunks(truncated, 5), BOUNDARY):
            seen.append(part.data)

    with pytest.raises(BadRequest, match="truncated"):
        asyncio.run(run())
    assert seen == [b"first"]


def test_a_body_that_is_not_multipart_is_a_bad_request() -> None:
    with pytest.raises(BadRequest, match="valid multipart/related"):
        _parse(b"--wrong\r\nContent-Type: application/dicom\r\n\r\nxx", 16)


@pytest.mark.parametrize(
    ("content_type", "error", "match"),
    [
        ("multipart/form-data; boundary=a", UnsupportedMediaType, "multipart/related"),
        (
            'multipart/related; type="application/dicom+json"; boundary=a',
            UnsupportedMediaType,
            "application/dicom",
        ),
        ("multipart/related; boundary=a", UnsupportedMediaType, "with type ''"),
        ('multipart/related; type="application/dicom"', BadRequest, "boundary"),
        ("", UnsupportedMediaType, "Content-Type must be"),
    ],
)
def test_content_type_must_be_multipart_related_dicom_with_a_boundary(
    content_type: str, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        boundary_of(content_type)


def test_the_boundary_may_be_quoted() -> None:
    assert boundary_of('Multipart/Related; boundary="a b"; type="application/dicom"') == b"a b"
