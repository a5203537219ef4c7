"""Which model a request goes to: its name or alias, whether the caller may use it, and which
models take over when every replica of it is overloaded (as LiteLLM's router does).

The model table (`model_table.py`) says what exists; each model's `ModelClient` spreads its calls
over that model's replicas. A request resolves to a `Route` once, before anything costs, and the
route carries everything the rest of generation needs: the served name, the model service's info
(context length), the client and the price.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass

from ragway.core.errors import RagwayError, Unavailable
from ragway.gateway.accounts.auth import Principal
from ragway.gateway.catalog.model_table import ModelTable, Price
from ragway.gateway.clients.discovery import DnsTarget
from ragway.gateway.clients.model import (
    GenerationChunk,
    GenerationRequest,
    ModelClient,
    ModelInfo,
    ModelReplica,
)
from ragway.gateway.core import metrics
from ragway.gateway.core.errors import ModelNotFound, Overloaded

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServedModel:
    """One model of the table at run time."""

    client: ModelClient
    aliases: tuple[str, ...] = ()
    price: Price | None = None  # None: RAGWAY_PRICES by name
    allow: frozenset[str] | None = None  # user or key ids; None: everyone
    fallbacks: tuple[str, ...] = ()

    def allows(self, principal: Principal) -> bool:
        return self.allow is None or principal.user_id in self.allow or principal.key_id in self.allow

    async def name(self) -> str:
        """The table's name, or (for the one-model default) the name its model service reports."""
        return self.client.name or (await self.client.info()).name


@dataclass(frozen=True)
class Route:
    """Where one request goes."""

    model: ServedModel
    name: str  # the served name: what responses and usage records say
    info: ModelInfo
    price: Price

    @property
    def client(self) -> ModelClient:
        return self.model.client


@dataclass(frozen=True)
class Listing:
    """A model as /v1/models shows it; `info` is None while none of its replicas answers."""

    name: str
    aliases: tuple[str, ...]
    info: ModelInfo | None


@dataclass
class Admission:
    """A generation some model took: that model, its first message (sent on admission), the rest."""

    route: Route
    first: GenerationChunk
    messages: AsyncGenerator[GenerationChunk, None]


class ModelRouter:
    """The gateway's models, by name."""

    def __init__(self, models: Sequence[ServedModel], default_price: Callable[[str], Price]) -> None:
        self.models = list(models)
        self.default_price = default_price

    @classmethod
    def build(
        cls,
        table: ModelTable,
        connect: Callable[[str], ModelReplica],
        *,
        default_price: Callable[[str], Price],
        info_ttl: float,
        backoff: float,
        backoff_max: float,
        dns_refresh: float,
    ) -> ModelRouter:
        """A router over `table`, reaching each replica address through `connect`; a `dns:` address
        stands for every address its name resolves to, each a replica of its own."""
        models = []
        for entry in table.models:
            targets = [(address, DnsTarget.parse(address)) for address in entry.replicas]
            client = ModelClient(
                [connect(address) for address, target in targets if target is None],
                name=entry.name,
                info_ttl=info_ttl,
                backoff=backoff,
                backoff_max=backoff_max,
                discover=[target for _, target in targets if target is not None],
                connect=connect,
                dns_refresh=dns_refresh,
            )
            models.append(
                ServedModel(
                    client=client,
                    aliases=tuple(entry.aliases),
                    price=entry.prices.per_million() if entry.prices is not None else None,
                    allow=frozenset(entry.allow) if entry.allow is not None else None,
                    fallbacks=tuple(entry.fallbacks),
                )
            )
        return cls(models, default_price)

    def start(self) -> None:
        for model in self.models:
            model.client.start()

    async def close(self) -> None:
        for model in self.models:
            await model.client.close()

    async def _route(self, model: ServedModel, name: str) -> Route:
        return Route(model, name, await model.client.info(), model.price or self.default_price(name))

    async def resolve(self, principal: Principal, requested: str | None) -> Route:
        """The model called `requested` (a name or an alias; None: the first the caller may use).
        Unknown and forbidden look the same, as OpenAI answers them: 404 model_not_found."""
        for model in self.models:
            if not model.allows(principal):
                continue
            name = await model.name()
            if requested is None or requested == name or requested in model.aliases:
                return await self._route(model, name)
        raise ModelNotFound(
            f"the model {requested!r} does not exist or you do not have access to it", field="model"
        )

    async def fallbacks(self, principal: Principal, route: Route, needed_tokens: int) -> tuple[Route, ...]:
        """`route`'s fallbacks the caller may use, that answer, and whose context holds the request."""
        found = []
        for name in route.model.fallbacks:
            model = next(m for m in self.models if m.client.name == name)
            if not model.allows(principal):
                continue
            try:
                fallback = await self._route(model, name)
            except RagwayError:
                continue  # down: no help on overload either
            if fallback.info.max_model_len >= needed_tokens:
                found.append(fallback)
        return tuple(found)

    async def listing(self, principal: Principal) -> list[Listing]:
        """Every model the caller may use, with its service's info when one of its replicas answers."""
        listed = []
        for model in self.models:
            if not model.allows(principal):
                continue
            try:
                info: ModelInfo | None = await model.client.info()
            except RagwayError:
                if model.client.name is None:
                    raise  # nameless and unreachable: nothing to show
                info = None
            listed.append(Listing(await model.name(), model.aliases, info))
        return listed

    def unavailable(self) -> list[str]:
        """Models none of whose replicas reports SERVING."""
        return [m.client.label for m in self.models if m.client.replicas.serving == 0]


async def admit(
    routes: Sequence[Route], request: GenerationRequest, timeout: float, key: str | None = None
) -> Admission:
    """Start the generation on the first of `routes` that admits it: the model asked for, then its
    fallbacks, each tried when every replica of the one before refused the request as overloaded.
    `key` routes it to the replica whose prefix cache likely holds its prompt (clients/replicas.py)."""
    for index, route in enumerate(routes):
        messages = route.client.generate(request, timeout, key)
        try:
            first = await anext(messages)
        except Overloaded:
            await messages.aclose()
            if index == len(routes) - 1:
                raise
            log.warning("model %s is overloaded; %s takes the request", route.name, routes[index + 1].name)
            metrics.MODEL_FALLBACKS.labels(routes[0].name, routes[index + 1].name).inc()
            continue
        except StopAsyncIteration:
            # The model service closed the call without a word: as unavailable as a refusal.
            raise Unavailable("the model service ended the call without answering") from None
        except BaseException:
            await messages.aclose()
            raise
        return Admission(route, first, messages)
    raise AssertionError("admit() needs at least one route")
