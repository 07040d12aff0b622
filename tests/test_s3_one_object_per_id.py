"""On a bucket as on disk: one object per id, and exactly one put that says it stored it.

``If-None-Match: *`` guards one key, and the same content put with two extensions has
two keys, so racing puts of it used to store it twice (10 races out of 10). Each round
here starts puts of one new content with different extensions at the same instant, from
separate stores (as separate processes would), against the real S3 server.
"""

from __future__ import annotations

import io
import threading
from concurrent.futures import ThreadPoolExecutor

from flask_hashfs import HashAddress, HashFS

from .s3_server import S3Server

ROUNDS = 12
EXTENSIONS = [".jpg", ".png", ".gif", ".txt"]


def race(stores: list[HashFS], data: bytes) -> list[HashAddress]:
    start = threading.Barrier(len(stores))

    def put(i: int) -> HashAddress:
        start.wait()
        return stores[i].put(io.BytesIO(data), EXTENSIONS[i % len(EXTENSIONS)])

    with ThreadPoolExecutor(len(stores)) as pool:
        return list(pool.map(put, range(len(stores))))


def test_racing_puts_with_different_extensions_store_one_object(s3_server: S3Server) -> None:
    url = s3_server.new_url()
    stores = [HashFS(url, storage_options=s3_server.options) for _ in EXTENSIONS]
    for round in range(ROUNDS):
        data = b"raced content, round %d" % round
        addresses = race(stores, data)
        assert sorted(a.is_duplicate for a in addresses) == [False, True, True, True], round
        stored = [key for key in stores[0].backend.all_keys() if addresses[0].id[4:] in key]
        assert len(stored) == 1, (round, stored)
        assert {a.relpath for a in addresses} == set(stored), round
        with stores[0].open(addresses[0].id) as stream:
            assert stream.read() == data


def test_a_deleted_id_can_be_stored_again_under_another_extension(s3_server: S3Server) -> None:
    store = HashFS(s3_server.new_url(), storage_options=s3_server.options)
    first = store.put(io.BytesIO(b"stored, deleted, stored"), ".jpg")
    store.delete(first.id)
    again = store.put(io.BytesIO(b"stored, deleted, stored"), ".png")
    assert again.is_duplicate is False
    assert again.relpath.endswith(".png")
    assert list(store.backend.all_keys()) == [again.relpath]
