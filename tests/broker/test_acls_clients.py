"""ACLs and SCRAM users managed and enforced through Kafka's APIs, with real clients.

The admin (a super user) manages ACLs with confluent-kafka's and kafka-python's admin
clients (CreateAcls/DescribeAcls/DeleteAcls; stored durably: a restarted broker has
them) and users with AlterUserScramCredentials / DescribeUserScramCredentials; alice
(aiokafka, kafka-python) is allowed and denied per topic and group for produce, fetch,
commit, create and describe, with the error codes Kafka answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaError,
    TopicAuthorizationFailedError,
)
from aiokafka.structs import OffsetAndMetadata
from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)

from backbone.broker import Broker, BrokerConfig
from backbone.broker.protocol import CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest
from backbone.broker.security import AclBinding as Binding
from backbone.broker.security import AclFilter, AclPermission, PatternType
from backbone.broker.security import AclOperation as Op
from backbone.broker.security import ResourceType as Res
from tests.broker.secured import (
    USERS,
    Certs,
    Wire,
    add_users,
    aiokafka_settings,
    confluent_settings,
    make_certs,
    secured_config,
)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def certs(tmp_path: Path) -> Certs:
    return make_certs(tmp_path / "certs")


@pytest.fixture
def broker_config(tmp_path: Path, certs: Certs) -> BrokerConfig:
    data = tmp_path / "data"
    add_users(data)
    return secured_config(data, certs)


@pytest.fixture
def broker_topics() -> dict[str, int]:
    return {"orders": 1, "secret": 1}


async def blocking(func: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.wait_for(asyncio.to_thread(func, *args), 60)


def admin_client(broker: Broker, certs: Certs, user: str = "admin") -> AdminClient:
    return AdminClient(
        {"bootstrap.servers": broker.bootstraps["secure"], **confluent_settings(certs, user)}
    )


def allow(
    principal: str,
    restype: ResourceType,
    name: str,
    operation: AclOperation,
    pattern: ResourcePatternType = ResourcePatternType.LITERAL,
    permission: AclPermissionType = AclPermissionType.ALLOW,
) -> AclBinding:
    return AclBinding(restype, name, pattern, principal, "*", operation, permission)


def create(admin: AdminClient, bindings: list[AclBinding]) -> None:
    for future in admin.create_acls(bindings, request_timeout=20).values():
        future.result(20)


ALICE = [
    allow("User:alice", ResourceType.TOPIC, "orders", AclOperation.WRITE),
    allow("User:alice", ResourceType.TOPIC, "orders", AclOperation.READ),
    allow("User:alice", ResourceType.GROUP, "g-ok", AclOperation.READ),
    allow(
        "User:alice",
        ResourceType.TOPIC,
        "alice.",
        AclOperation.CREATE,
        ResourcePatternType.PREFIXED,
    ),
    allow(
        "User:alice", ResourceType.TOPIC, "alice.", AclOperation.WRITE, ResourcePatternType.PREFIXED
    ),
]


async def test_acls_through_kafka_admin_clients_survive_a_restart(
    broker_config: BrokerConfig, certs: Certs
) -> None:
    any_filter = AclBindingFilter(
        ResourceType.ANY,
        None,
        ResourcePatternType.ANY,
        None,
        None,
        AclOperation.ANY,
        AclPermissionType.ANY,
    )
    async with Broker(broker_config) as broker:
        admin = admin_client(broker, certs)
        await blocking(create, admin, ALICE)
        described = await blocking(
            lambda: admin.describe_acls(any_filter, request_timeout=20).result(20)
        )
        assert sorted(described, key=str) == sorted(ALICE, key=str)
        deleted = await blocking(
            lambda: [
                f.result(20)
                for f in admin.delete_acls(
                    [
                        AclBindingFilter(
                            ResourceType.TOPIC,
                            "alice.",
                            ResourcePatternType.PREFIXED,
                            None,
                            None,
                            AclOperation.ANY,
                            AclPermissionType.ANY,
                        )
                    ],
                    request_timeout=20,
                ).values()
            ]
        )
        assert sorted(deleted[0], key=str) == sorted(ALICE[3:], key=str)
    async with Broker(broker_config) as restarted:
        admin = admin_client(restarted, certs)
        described = await blocking(
            lambda: admin.describe_acls(any_filter, request_timeout=20).result(20)
        )
        assert sorted(described, key=str) == sorted(ALICE[:3], key=str)
        match = AclBindingFilter(
            ResourceType.TOPIC,
            "orders",
            ResourcePatternType.MATCH,
            None,
            None,
            AclOperation.ANY,
            AclPermissionType.ANY,
        )
        found = await blocking(lambda: admin.describe_acls(match, request_timeout=20).result(20))
        assert sorted(found, key=str) == sorted(ALICE[:2], key=str)
    from kafka.admin import (
        ACLFilter,
        ACLResourcePatternType,
        KafkaAdminClient,
        ResourcePatternFilter,
    )
    from kafka.admin import ACLOperation as KOp
    from kafka.admin import ACLPermissionType as KPerm
    from kafka.admin import ResourceType as KType

    async with Broker(broker_config) as third:

        def kafka_python_describe() -> list[Any]:
            client = KafkaAdminClient(
                bootstrap_servers=third.bootstraps["secure"],
                security_protocol="SASL_SSL",
                ssl_cafile=str(certs.ca),
                sasl_mechanism="SCRAM-SHA-256",
                sasl_plain_username="admin",
                sasl_plain_password=USERS["admin"],
            )
            try:
                acls, error = client.describe_acls(
                    ACLFilter(
                        None,
                        "*",
                        KOp.ANY,
                        KPerm.ANY,
                        ResourcePatternFilter(KType.GROUP, None, ACLResourcePatternType.ANY),
                    )
                )
                return [
                    (a.principal, a.operation, a.resource_pattern.resource_name, error)
                    for a in acls
                ]
            finally:
                client.close()

        rows = await blocking(kafka_python_describe)
        assert [(p, op.name, name) for p, op, name, _ in rows] == [("User:alice", "READ", "g-ok")]


async def test_acl_apis_need_the_cluster_permission_and_an_authorizer(
    broker: Broker, certs: Certs, tmp_path: Path
) -> None:
    alice = admin_client(broker, certs, "alice")
    with pytest.raises(KafkaException, match=r"CLUSTER_AUTHORIZATION_FAILED|may not ALTER"):
        await blocking(create, alice, ALICE[:1])
    async with Broker(BrokerConfig(data_dir=tmp_path / "open", port=0)) as plain:
        admin = AdminClient({"bootstrap.servers": plain.bootstrap})
        with pytest.raises(KafkaException, match="ACLs are not enforced by this broker"):
            await blocking(create, admin, ALICE[:1])


@pytest.fixture
async def with_acls(broker: Broker, certs: Certs) -> Broker:
    await blocking(create, admin_client(broker, certs), ALICE)
    return broker


async def test_produce_allowed_and_denied_per_topic(with_acls: Broker, certs: Certs) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=with_acls.bootstraps["secure"], **aiokafka_settings(certs, "alice")
    )
    await producer.start()
    try:
        assert (await producer.send_and_wait("orders", b"ok")).offset == 0
        with pytest.raises(TopicAuthorizationFailedError):
            await producer.send_and_wait("secret", b"no")
    finally:
        await producer.stop()
    assert with_acls.logs.partition("secret", 0).high_watermark == 0
    assert with_acls.logs.partition("orders", 0).high_watermark == 1


async def fetch_one(broker: Broker, certs: Certs, topic: str, user: str = "alice") -> list[bytes]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=broker.bootstraps["secure"],
        enable_auto_commit=False,
        **aiokafka_settings(certs, user),
    )
    await consumer.start()
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        consumer.seek(partition, 0)
        out: list[bytes] = []
        async with asyncio.timeout(20):
            while not out:
                for records in (await consumer.getmany(timeout_ms=300)).values():
                    out += [r.value for r in records]
        return out
    finally:
        await consumer.stop()


async def test_fetch_allowed_denied_and_deny_overrides(with_acls: Broker, certs: Certs) -> None:
    from tests.broker.test_log_support import make_batch

    for topic in ("orders", "secret"):
        await with_acls.logs.partition(topic, 0).append(make_batch([topic.encode()]), acks=-1)
    admin = admin_client(with_acls, certs)
    # alice may see that "secret" exists (DESCRIBE), so the refusal comes from Fetch itself
    await blocking(
        create, admin, [allow("User:alice", ResourceType.TOPIC, "secret", AclOperation.DESCRIBE)]
    )
    assert await fetch_one(with_acls, certs, "orders") == [b"orders"]
    with pytest.raises(TopicAuthorizationFailedError):
        await fetch_one(with_acls, certs, "secret")
    deny = allow(
        "User:alice",
        ResourceType.TOPIC,
        "orders",
        AclOperation.READ,
        permission=AclPermissionType.DENY,
    )
    await blocking(create, admin, [deny])
    with pytest.raises(TopicAuthorizationFailedError):
        await fetch_one(with_acls, certs, "orders")


async def test_commit_allowed_and_denied_per_group(with_acls: Broker, certs: Certs) -> None:
    async def commit(group: str) -> int | None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=with_acls.bootstraps["secure"],
            group_id=group,
            enable_auto_commit=False,
            **aiokafka_settings(certs, "alice"),
        )
        await consumer.start()
        try:
            partition = TopicPartition("orders", 0)
            consumer.assign([partition])
            await consumer.commit({partition: OffsetAndMetadata(1, "")})
            return await consumer.committed(partition)
        finally:
            await consumer.stop()

    assert await commit("g-ok") == 1
    with pytest.raises(GroupAuthorizationFailedError):
        await commit("g-no")
    assert with_acls.groups.fetch_offsets("g-no", None) == []


async def test_create_and_describe_topics_by_acl(with_acls: Broker, certs: Certs) -> None:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=with_acls.bootstraps["secure"], **aiokafka_settings(certs, "alice")
    )
    await admin.start()
    try:
        response = await admin.create_topics(
            [NewTopic("alice.events", 2, 1), NewTopic("other", 1, 1)]
        )
        codes = {name: code for name, code, *_ in response.topic_errors}
        assert codes == {"alice.events": 0, "other": 29}  # TOPIC_AUTHORIZATION_FAILED
        assert sorted(await admin.list_topics()) == ["alice.events", "orders"]  # not "secret"
    finally:
        await admin.close()
    assert "other" not in with_acls.logs.topics
    # auto-creation needs CREATE too: alice may write alice.* (and create it), not new.*
    producer = AIOKafkaProducer(
        bootstrap_servers=with_acls.bootstraps["secure"], **aiokafka_settings(certs, "alice")
    )
    await producer.start()
    try:
        assert (await producer.send_and_wait("alice.auto", b"x")).offset == 0
    finally:
        await producer.stop()
    assert "alice.auto" in with_acls.logs.topics


async def test_idempotent_producer_needs_write_somewhere(with_acls: Broker, certs: Certs) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=with_acls.bootstraps["secure"],
        enable_idempotence=True,
        **aiokafka_settings(certs, "bob"),
    )
    with pytest.raises(KafkaError, match="ClusterAuthorizationFailed"):
        await producer.start()
    await producer.stop()
    alice = AIOKafkaProducer(
        bootstrap_servers=with_acls.bootstraps["secure"],
        enable_idempotence=True,
        **aiokafka_settings(certs, "alice"),
    )
    await alice.start()
    try:
        assert (await alice.send_and_wait("orders", b"idempotent")).offset >= 0
    finally:
        await alice.stop()


async def test_scram_users_through_kafka_apis(broker: Broker, certs: Certs) -> None:
    admin = admin_client(broker, certs)

    def alter(alterations: list[Any], client: AdminClient = admin) -> dict[str, Any]:
        results: dict[str, Any] = {}
        for user, future in client.alter_user_scram_credentials(
            alterations, request_timeout=20
        ).items():
            try:
                results[user] = future.result(20)
            except KafkaException as exc:
                results[user] = exc.args[0].name()
        return results

    carol = UserScramCredentialUpsertion(
        "carol", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192), b"carol-pw"
    )
    assert await blocking(alter, [carol]) == {"carol": None}
    stored = (broker.config.data_dir / "security" / "users.json").read_text()
    assert "carol-pw" not in stored

    def describe() -> dict[str, list[tuple[Any, int]]]:
        futures = admin.describe_user_scram_credentials(["carol", "alice"], request_timeout=20)
        return {
            user: sorted(
                ((i.mechanism, i.iterations) for i in f.result(20).scram_credential_infos),
                key=str,
            )
            for user, f in futures.items()
        }

    assert await blocking(describe) == {
        "carol": [(ScramMechanism.SCRAM_SHA_512, 8192)],
        "alice": [(ScramMechanism.SCRAM_SHA_256, 4096), (ScramMechanism.SCRAM_SHA_512, 4096)],
    }
    producer = AIOKafkaProducer(
        bootstrap_servers=broker.bootstraps["secure"],
        **aiokafka_settings(certs, "carol", "carol-pw"),
    )
    await producer.start()  # carol authenticates (metadata needs no ACL)
    await producer.stop()
    # errors per user, as Kafka
    assert await blocking(
        alter, [UserScramCredentialDeletion("nobody", ScramMechanism.SCRAM_SHA_256)]
    ) == {"nobody": "RESOURCE_NOT_FOUND"}
    assert await blocking(
        alter,
        [
            UserScramCredentialUpsertion(
                "dave", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 100), b"pw"
            )
        ],
    ) == {"dave": "UNACCEPTABLE_CREDENTIAL"}
    assert await blocking(alter, [carol], admin_client(broker, certs, "alice")) == {
        "carol": "CLUSTER_AUTHORIZATION_FAILED"
    }
    assert await blocking(
        alter, [UserScramCredentialDeletion("carol", ScramMechanism.SCRAM_SHA_512)]
    ) == {"carol": None}
    refused = AIOKafkaProducer(
        bootstrap_servers=broker.bootstraps["secure"],
        request_timeout_ms=5000,
        **aiokafka_settings(certs, "carol", "carol-pw"),
    )
    with pytest.raises(KafkaError):
        await refused.start()
    await refused.stop()


async def test_acl_apis_version_0_literal_only(tmp_path: Path, certs: Certs) -> None:
    """CreateAcls/DescribeAcls/DeleteAcls v0 (Kafka before 2.0, Sarama before 1.40) carry no
    pattern type: they mean LITERAL, and a v0 describe or delete leaves PREFIXED ACLs be."""
    config = secured_config(tmp_path / "data", certs, super_users=("ANONYMOUS",))
    async with Broker(config) as broker:
        prefixed = Binding(
            Res.TOPIC, "bob.", PatternType.PREFIXED, "User:bob", "*", Op.READ, AclPermission.ALLOW
        )
        await asyncio.to_thread(broker.security.acls.add, [prefixed])
        wire = await Wire.open(int(broker.bootstraps["internal"].rsplit(":", 1)[1]))
        try:
            creation = CreateAclsRequest.AclCreation(
                resource_type=int(Res.TOPIC),
                resource_name="orders",
                principal="User:bob",
                host="*",
                operation=int(Op.READ),
                permission_type=int(AclPermission.ALLOW),
            )
            created = await wire.send(CreateAclsRequest(creations=[creation]), 0)
            assert [(r.error_code, r.error_message) for r in created.results] == [(0, None)]
            described = await wire.send(
                DescribeAclsRequest(
                    resource_type_filter=int(Res.ANY),
                    resource_name_filter=None,
                    principal_filter="User:bob",
                    host_filter=None,
                    operation=int(Op.ANY),
                    permission_type=int(AclPermission.ANY),
                ),
                0,
            )
            assert described.error_code == 0
            assert [
                (r.resource_type, r.resource_name, [(a.principal, a.operation) for a in r.acls])
                for r in described.resources
            ] == [(int(Res.TOPIC), "orders", [("User:bob", int(Op.READ))])]
            deleted = await wire.send(
                DeleteAclsRequest(
                    filters=[
                        DeleteAclsRequest.DeleteAclsFilter(
                            resource_type_filter=int(Res.ANY),
                            resource_name_filter=None,
                            principal_filter="User:bob",
                            host_filter=None,
                            operation=int(Op.ANY),
                            permission_type=int(AclPermission.ANY),
                        )
                    ]
                ),
                0,
            )
            [result] = deleted.filter_results
            assert result.error_code == 0
            assert [(m.resource_name, m.principal) for m in result.matching_acls] == [
                ("orders", "User:bob")
            ]
        finally:
            await wire.close()
        assert broker.security.acls.matching(AclFilter()) == [prefixed]
