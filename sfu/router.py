"""A room's media: which producers exist and which consumers each one feeds."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING

from sfu.consumer import Consumer, ConsumerListener
from sfu.params import ConsumerParams, ProducerParams
from sfu.producer import Producer, ProducerListener
from sfu.stats import MediaStats

if TYPE_CHECKING:
    from sfu.connection import Connection
    from sfu.transport import WebRtcTransport


class Router:
    """Creates producers and consumers on the connections of one room. Knows nothing of SDP or roles."""

    def __init__(
        self,
        router_id: str,
        *,
        connection_of: Callable[[WebRtcTransport], Connection],
        clock: Callable[[], float],
        stats: MediaStats,
        rng: random.Random,
    ) -> None:
        self.id = router_id
        self._connection_of = connection_of
        self._clock = clock
        self._stats = stats
        self._rng = rng
        self.producers: dict[str, Producer] = {}
        self.consumers: dict[str, Consumer] = {}
        self.closed = False

    def _new_id(self) -> str:
        return f"{self._rng.getrandbits(64):016x}"

    def add_producer(self, transport: WebRtcTransport, params: ProducerParams,
                     listener: ProducerListener | None = None) -> Producer:
        connection = self._connection_of(transport)
        producer = Producer(self._new_id(), params, sink=connection, stats=self._stats, listener=listener)
        connection.add_producer(producer)
        self.producers[producer.id] = producer
        return producer

    def add_consumer(self, transport: WebRtcTransport, producer: Producer, params: ConsumerParams,
                     listener: ConsumerListener | None = None) -> Consumer:
        if producer.closed or self.producers.get(producer.id) is not producer:
            raise ValueError("producer is closed or belongs to another router")
        if params.kind is not producer.kind:
            raise ValueError("consumer kind differs from its producer's")
        connection = self._connection_of(transport)
        consumer = Consumer(self._new_id(), producer, params, sink=connection, stats=self._stats, rng=self._rng,
                            listener=listener)
        connection.add_consumer(consumer)
        producer.consumers.append(consumer)
        self.consumers[consumer.id] = consumer
        now = self._clock()
        consumer.update_layer(now=now)
        consumer.request_keyframe(now=now)  # a new subscriber gets a picture promptly
        return consumer

    def prune(self) -> None:
        """Forget closed producers and consumers (they close themselves when their connection goes)."""
        for table in (self.producers, self.consumers):
            for key in [k for k, v in table.items() if v.closed]:
                del table[key]

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for producer in list(self.producers.values()):
            producer.close()
        for consumer in list(self.consumers.values()):
            consumer.close()
        self.producers.clear()
        self.consumers.clear()
