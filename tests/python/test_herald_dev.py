"""confluent-kafka-python with a running `herald dev`: its
ProtobufDeserializer reads every herald topic, and its ProtobufSerializer,
with default settings, frames an OrderCreated with herald's schema id."""
import importlib
import time
import uuid

import grpc
import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer, ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

EVENT_MODULES = ["herald.orders.v1.events_pb2", "herald.inventory.v1.events_pb2", "herald.risk.v1.events_pb2"]


@pytest.fixture(scope="module")
def event_classes(generated):
    """Every event class of proto/, by full name."""
    out = {}
    for name in EVENT_MODULES:
        mod = importlib.import_module(name)
        for msg in mod.DESCRIPTOR.message_types_by_name.values():
            out[msg.full_name] = getattr(mod, msg.name)
    return out


def place_order(grpc_addr):
    """Stocks a product and orders it; returns the order id."""
    orders = importlib.import_module("herald.orders.v1.orders_pb2")
    orders_grpc = importlib.import_module("herald.orders.v1.orders_pb2_grpc")
    inventory = importlib.import_module("herald.inventory.v1.inventory_pb2")
    inventory_grpc = importlib.import_module("herald.inventory.v1.inventory_pb2_grpc")
    money = importlib.import_module("herald.money.v1.money_pb2")
    sku = "PY" + uuid.uuid4().hex[:8].upper()
    with grpc.insecure_channel(grpc_addr) as ch:
        inventory_grpc.InventoryServiceStub(ch).SetStock(inventory.SetStockRequest(sku=sku, quantity=5), timeout=10)
        resp = orders_grpc.OrderServiceStub(ch).CreateOrder(orders.CreateOrderRequest(
            request_id=str(uuid.uuid4()), customer_id="py-client",
            items=[orders.LineItem(sku=sku, quantity=2, unit_price=money.Money(currency_code="EUR", units=3))],
        ), timeout=10)
    return resp.order.order_id


def test_deserializer_reads_every_herald_topic(generated, event_classes, herald_grpc, herald_kafka, herald_registry):
    order_id = place_order(herald_grpc)
    registry = SchemaRegistryClient({"url": herald_registry})
    topics = sorted(t for t in AdminClient({"bootstrap.servers": herald_kafka}).list_topics(timeout=10).topics
                    if t.startswith("herald.") and not t.endswith(".dlq"))
    assert topics, "herald dev has no topics"
    consumer = Consumer({
        "bootstrap.servers": herald_kafka, "group.id": f"py-client-{uuid.uuid4()}",
        "auto.offset.reset": "earliest", "enable.auto.commit": False, "enable.metrics.push": False,
    })
    consumer.subscribe(topics)
    decoded = {}  # topic -> event types of this order's records
    deadline = time.time() + 60
    try:
        while time.time() < deadline and not (set(decoded) == set(topics) and
                                               "herald.orders.v1.OrderConfirmed" in decoded.get("herald.orders.v1", set())):
            m = consumer.poll(0.5)
            if m is None:
                continue
            assert m.error() is None, m.error()
            ce_type = dict(m.headers() or [])["ce_type"].decode()
            cls = event_classes[ce_type]
            # The deserializer fetches the writer's schema with
            # format=serialized and resolves its references, as it would
            # against Confluent's registry.
            msg = ProtobufDeserializer(cls, {}, registry)(m.value(), SerializationContext(m.topic(), MessageField.VALUE))
            assert isinstance(msg, cls)
            if getattr(msg, "order_id", None) == order_id:
                decoded.setdefault(m.topic(), set()).add(ce_type)
    finally:
        consumer.close()
    assert set(decoded) == set(topics), f"decoded records of order {order_id}: {decoded}; topics {topics}"
    assert "herald.orders.v1.OrderConfirmed" in decoded["herald.orders.v1"], decoded


def test_serializer_frames_with_heralds_schema_id(generated, event_classes, herald_registry):
    registry = SchemaRegistryClient({"url": herald_registry})
    subject = "herald.orders.v1-value"
    subjects, versions = registry.get_subjects(), registry.get_versions(subject)
    latest = registry.get_latest_version(subject)
    cls = event_classes["herald.orders.v1.OrderCreated"]
    ctx = SerializationContext("herald.orders.v1", MessageField.VALUE)

    # Default settings: auto-register, schemas sent as base64 descriptors,
    # references registered under their import names.
    value = ProtobufSerializer(cls, registry)(cls(order_id="py-1", customer_id="bob"), ctx)

    assert value[0] == 0, "magic byte"
    assert int.from_bytes(value[1:5], "big") == latest.schema_id, "herald's schema id, not a new one"
    index = list(cls.DESCRIPTOR.file.message_types_by_name).index("OrderCreated")
    indexes = b"\x00" if index == 0 else bytes([2, index * 2])  # zigzag varints: count 1, then the index
    assert value[5:5 + len(indexes)] == indexes, "message indexes"
    assert registry.get_versions(subject) == versions, "no new version"
    assert registry.get_subjects() == subjects, "no new subject"
    back = ProtobufDeserializer(cls, {}, registry)(value, ctx)
    assert back.order_id == "py-1" and back.customer_id == "bob"

    # normalize.schemas finds the same id.
    confirmed = event_classes["herald.orders.v1.OrderConfirmed"]
    value = ProtobufSerializer(confirmed, registry, {"normalize.schemas": True})(confirmed(order_id="py-1"), ctx)
    assert int.from_bytes(value[1:5], "big") == latest.schema_id
    assert registry.get_versions(subject) == versions
