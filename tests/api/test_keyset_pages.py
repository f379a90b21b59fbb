"""Every list pages the same way (`geopush.store.keyset`): `limit` rows at a time, oldest
first (deliveries newest first), a `next_cursor` while more remain, never a row twice."""

from __future__ import annotations

from tests.api_client import Api


async def _walk(api: Api, path: str, limit: int) -> list[str]:
    seen: list[str] = []
    cursor = None
    for _ in range(20):
        query = ("&" if "?" in path else "?") + f"limit={limit}"
        query += f"&cursor={cursor}" if cursor else ""
        body = (await api.as_role("marketer", "GET", path + query)).ok(200)
        assert len(body["items"]) <= limit
        seen += [item["id"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            return seen
    raise AssertionError("the pages never ended")


async def test_stores_page_in_creation_order(api: Api) -> None:
    made = [(await api.store(external_id=f"P-{i}"))["id"] for i in range(5)]
    assert await _walk(api, "/v1/stores", 2) == made


async def test_a_deleted_offer_leaves_the_pages_and_filters_hold(api: Api) -> None:
    fence = await api.circle(39.9, 116.4, 100)
    made = [(await api.offer(geofence_ids=[fence["id"]]))["id"] for _ in range(4)]
    (await api.as_role("marketer", "DELETE", f"/v1/offers/{made[1]}")).ok(204)
    assert await _walk(api, "/v1/offers", 2) == [made[0], *made[2:]]
    assert await _walk(api, "/v1/offers?trigger=exit", 2) == []
    assert await _walk(api, "/v1/offers?trigger=enter", 1) == [made[0], *made[2:]]
