"""An asyncio recommender: a user's embedding is the mean of the last N items they clicked,
and their recommendations are that mean's nearest items (the clicked ones left out).

Run it (loads the 2,000 bundled sample embeddings into the space ``rec-items`` of the
embedded server, records a few clicks, prints recommendations):

    python examples/recommender.py

In a web service the same two coroutines serve a request; with FastAPI, for example::

    app = FastAPI()

    @app.on_event("startup")
    async def startup() -> None:
        app.state.hub = await rediscache.connect_async()          # or connect_async(url)
        app.state.items = await app.state.hub.space("rec-items")

    @app.post("/click/{user}/{item}")
    async def click(user: str, item: str) -> None:
        await record_click(app.state.hub, user, item)

    @app.get("/recommend/{user}")
    async def recommend_endpoint(user: str, k: int = 10) -> list[dict]:
        hits = await recommend(app.state.hub, app.state.items, user, k=k)
        return [{"item": h.key, "distance": h.distance, **h.metadata} for h in hits]
"""

from __future__ import annotations

import asyncio

import rediscache
from rediscache import AsyncHub, AsyncSpace, Hit

#: Clicks that make up a user's embedding.
LAST_N = 10
SPACE = "rec-items"


def history_key(user: str) -> str:
    """The application's own list of a user's clicks, newest first (not a rediscache key)."""
    return f"app:clicks:{user}"


async def record_click(hub: AsyncHub, user: str, item: str) -> None:
    """Remember that ``user`` clicked ``item``, keeping the last LAST_N clicks."""
    key = history_key(user)
    pipe = hub.client.pipeline(transaction=True)
    pipe.lpush(key, item)
    pipe.ltrim(key, 0, LAST_N - 1)
    await pipe.execute()


async def recommend(hub: AsyncHub, items: AsyncSpace, user: str, *, k: int = 10) -> list[Hit]:
    """The ``k`` items nearest to the mean of ``user``'s last clicks, clicked ones excluded.

    Three round trips: the click list, the atomic average (Lua on the server; clicks whose
    item is gone are skipped), one KNN search.
    """
    clicked = [c.decode() for c in await hub.client.lrange(history_key(user), 0, LAST_N - 1)]
    if not clicked:
        return []
    mean = await items.average(clicked, normalize=True, missing="skip")
    if mean.used == 0:
        return []
    return await items.search(mean.vector, k, exclude=clicked)


async def main() -> None:
    """Load the sample, click a few packages as one user, print recommendations."""
    from rediscache.demo import load_sample

    async with await rediscache.connect_async() as hub:
        sample = load_sample()
        items = await hub.create_space(
            SPACE, sample.vectors.shape[1], fields={"category": "tag"}, exist_ok=True
        )
        await items.put_many(sample.keys(), sample.vectors, sample.metadata())
        user = "demo-user"
        await hub.client.delete(history_key(user))
        for item in sample.keys()[:5]:
            await record_click(hub, user, item)
        print(f"{user} clicked: {', '.join(sample.keys()[:5])}")
        for hit in await recommend(hub, items, user, k=5):
            print(f"  {hit.distance:.3f}  {hit.key}  [{hit.metadata.get('category')}]")
        await hub.client.delete(history_key(user))
        await hub.drop_space(SPACE)


if __name__ == "__main__":
    asyncio.run(main())
