"""The operator shares one Redis client per URL among its pools and closes it with the last user."""

from __future__ import annotations

from pirate_operator.reconcile.context import RedisClients


class Opened:
    def __init__(self, url: str) -> None:
        self.url = url
        self.closed = False

    def close(self) -> None:
        self.closed = True


def test_pools_on_one_url_share_a_client_until_the_url_changes() -> None:
    opened: list[Opened] = []

    def opener(url: str) -> Opened:
        opened.append(Opened(url))
        return opened[-1]

    clients = RedisClients(opener=opener)  # type: ignore[arg-type]
    a = clients.get("ns", "a", "redis://r1")
    b = clients.get("ns", "b", "redis://r1")
    assert a is b
    assert len(clients) == 1
    c = clients.get("ns", "c", "redis://r2")
    assert c is not a
    assert len(clients) == 2
    # Pool "a" moves to r2: it now shares c; r1's client is closed and the next user reopens it.
    assert clients.get("ns", "a", "redis://r2") is c
    assert opened[0].closed
    again = clients.get("ns", "b", "redis://r1")
    assert again is not a
    assert not again.closed


def test_discard_closes_and_close_all_closes_everything() -> None:
    clients = RedisClients(opener=Opened)  # type: ignore[arg-type]
    first = clients.get("ns", "a", "redis://r1")
    clients.discard("ns", "a")
    assert first.closed
    clients.discard("ns", "never-seen")  # unknown pools are fine
    second = clients.get("ns", "b", "redis://r2")
    clients.close_all()
    assert second.closed
    assert len(clients) == 0
