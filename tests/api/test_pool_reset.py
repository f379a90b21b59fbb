"""The pool's release skips asyncpg's reset round trip only for connections marked clean."""

from __future__ import annotations

from geopush.store.database import create_pool, release_without_reset


async def test_only_a_connection_marked_clean_skips_the_reset(database_url: str) -> None:
    pool = await create_pool(database_url, 1)
    try:
        # Session state is how a skipped reset shows: RESET ALL would clear it.
        async with pool.acquire() as conn:
            await conn.execute("SET application_name = 'left-behind'")
            release_without_reset(conn)
        async with pool.acquire() as conn:
            assert await conn.fetchval("SHOW application_name") == "left-behind"
            await conn.execute("SET application_name = 'cleared'")
        async with pool.acquire() as conn:  # not marked: reset as asyncpg always did
            assert await conn.fetchval("SHOW application_name") != "cleared"
    finally:
        await pool.close()
