"""Errors of the broker (``backbone.broker``), each carrying its Kafka error code.

The log, the producer-state table and the group coordinator raise these domain
errors; the handlers map them to the response's ``error_code`` through
``exc.code`` (one table: this module). Anything else a handler raises is a bug
and is answered with UNKNOWN_SERVER_ERROR (-1) and logged with its traceback.

The tree::

    BrokerError (code -1, UNKNOWN_SERVER_ERROR)
    ├── OffsetOutOfRange (1)          ├── InvalidTopic (17)
    ├── CorruptRecord (2)             ├── RecordListTooLarge (18)
    ├── UnknownTopicOrPartition (3)   ├── InvalidRequiredAcks (21)
    ├── InvalidFetchSize (4)          ├── IllegalGeneration (22)
    ├── MessageTooLarge (10)          ├── InconsistentGroupProtocol (23)
    ├── CoordinatorNotAvailable (15)  ├── InvalidGroupId (24)
    ├── NotCoordinator (16)           ├── UnknownMemberId (25)
    ├── InvalidSessionTimeout (26)    ├── RebalanceInProgress (27)
    ├── InvalidCommitOffsetSize (28)  ├── UnsupportedVersion (35)
    ├── TopicAlreadyExists (36)       ├── InvalidPartitions (37)
    ├── InvalidReplicationFactor (38) ├── InvalidRequest (42)
    ├── InvalidConfig (40)            ├── PolicyViolation (44)
    ├── OutOfOrderSequenceNumber (45) ├── DuplicateSequenceNumber (46)
    ├── InvalidProducerEpoch (47)     ├── InvalidTimestamp (32)
    ├── UnknownProducerId (59)        ├── NonEmptyGroup (68)
    ├── GroupIdNotFound (69)          ├── MemberIdRequired (79)
    ├── GroupMaxSizeReached (81)      ├── FencedInstanceId (82)
    ├── InvalidRecord (87)            ├── UnstableOffsetCommit (88)
    ├── ProducerFenced (90)           ├── UnknownTopicId (100)
    ├── KafkaStorageError (56)        └── GroupSubscribedToTopic (86)
    └── OffsetMetadataTooLarge (12)
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "BrokerError",
    "CoordinatorNotAvailable",
    "CorruptRecord",
    "DuplicateSequenceNumber",
    "FencedInstanceId",
    "GroupIdNotFound",
    "GroupMaxSizeReached",
    "GroupSubscribedToTopic",
    "IllegalGeneration",
    "InconsistentGroupProtocol",
    "InvalidCommitOffsetSize",
    "InvalidConfig",
    "InvalidFetchSize",
    "InvalidGroupId",
    "InvalidPartitions",
    "InvalidProducerEpoch",
    "InvalidRecord",
    "InvalidReplicationFactor",
    "InvalidRequest",
    "InvalidRequiredAcks",
    "InvalidSessionTimeout",
    "InvalidTimestamp",
    "InvalidTopic",
    "KafkaStorageError",
    "MemberIdRequired",
    "MessageTooLarge",
    "NonEmptyGroup",
    "NotCoordinator",
    "OffsetMetadataTooLarge",
    "OffsetOutOfRange",
    "OutOfOrderSequenceNumber",
    "PolicyViolation",
    "ProducerFenced",
    "RebalanceInProgress",
    "RecordListTooLarge",
    "TopicAlreadyExists",
    "UnknownMemberId",
    "UnknownProducerId",
    "UnknownTopicId",
    "UnknownTopicOrPartition",
    "UnstableOffsetCommit",
    "UnsupportedVersion",
]


class BrokerError(Exception):
    """A domain error with its Kafka error code; the message goes to ``error_message``."""

    code: ClassVar[int] = -1


def _error(name: str, code: int, doc: str) -> type[BrokerError]:
    return type(name, (BrokerError,), {"code": code, "__doc__": doc, "__module__": __name__})


OffsetOutOfRange = _error("OffsetOutOfRange", 1, "The requested offset is outside the log.")
CorruptRecord = _error("CorruptRecord", 2, "A record batch failed its length, magic or CRC check.")
UnknownTopicOrPartition = _error("UnknownTopicOrPartition", 3, "No such topic or partition.")
InvalidFetchSize = _error("InvalidFetchSize", 4, "The fetch size is invalid.")
MessageTooLarge = _error("MessageTooLarge", 10, "A batch is larger than max.message.bytes.")
OffsetMetadataTooLarge = _error(
    "OffsetMetadataTooLarge", 12, "The committed offset metadata is too large."
)
CoordinatorNotAvailable = _error("CoordinatorNotAvailable", 15, "The coordinator is not available.")
NotCoordinator = _error("NotCoordinator", 16, "This broker is not the coordinator.")
InvalidTopic = _error("InvalidTopic", 17, "The topic name is invalid.")
RecordListTooLarge = _error("RecordListTooLarge", 18, "The produce request is too large.")
InvalidRequiredAcks = _error("InvalidRequiredAcks", 21, "acks must be -1, 0 or 1.")
IllegalGeneration = _error("IllegalGeneration", 22, "The generation id is not the current one.")
InconsistentGroupProtocol = _error(
    "InconsistentGroupProtocol", 23, "The member's protocols do not match the group's."
)
InvalidGroupId = _error("InvalidGroupId", 24, "The group id is empty or invalid.")
UnknownMemberId = _error("UnknownMemberId", 25, "The member id is not in the group.")
InvalidSessionTimeout = _error("InvalidSessionTimeout", 26, "The session timeout is out of range.")
RebalanceInProgress = _error("RebalanceInProgress", 27, "The group is rebalancing.")
InvalidCommitOffsetSize = _error("InvalidCommitOffsetSize", 28, "The offset metadata is too large.")
InvalidTimestamp = _error("InvalidTimestamp", 32, "A timestamp is out of the accepted range.")
UnsupportedVersion = _error("UnsupportedVersion", 35, "The API version is not supported.")
TopicAlreadyExists = _error("TopicAlreadyExists", 36, "The topic already exists.")
InvalidPartitions = _error("InvalidPartitions", 37, "The partition count is invalid.")
InvalidReplicationFactor = _error(
    "InvalidReplicationFactor", 38, "The replication factor is invalid (single node: 1 or -1)."
)
InvalidConfig = _error("InvalidConfig", 40, "A configuration name or value is invalid.")
InvalidRequest = _error("InvalidRequest", 42, "The request is malformed or inconsistent.")
PolicyViolation = _error("PolicyViolation", 44, "The request violates a broker policy.")
OutOfOrderSequenceNumber = _error(
    "OutOfOrderSequenceNumber", 45, "The producer sequence number is not the next one."
)
DuplicateSequenceNumber = _error(
    "DuplicateSequenceNumber", 46, "The producer sent a duplicate sequence number."
)
InvalidProducerEpoch = _error("InvalidProducerEpoch", 47, "The producer epoch is stale.")
KafkaStorageError = _error("KafkaStorageError", 56, "The log could not be written or read.")
UnknownProducerId = _error("UnknownProducerId", 59, "The producer id is not known.")
NonEmptyGroup = _error("NonEmptyGroup", 68, "The group still has members.")
GroupIdNotFound = _error("GroupIdNotFound", 69, "The group does not exist.")
MemberIdRequired = _error("MemberIdRequired", 79, "Rejoin with the member id given.")
GroupMaxSizeReached = _error("GroupMaxSizeReached", 81, "The group is full.")
FencedInstanceId = _error("FencedInstanceId", 82, "Another member uses this group.instance.id.")
GroupSubscribedToTopic = _error(
    "GroupSubscribedToTopic", 86, "The group is subscribed to the topic."
)
InvalidRecord = _error(
    "InvalidRecord", 87, "A record is invalid (e.g. no key on a compacted topic)."
)
UnstableOffsetCommit = _error("UnstableOffsetCommit", 88, "There are unstable offsets.")
ProducerFenced = _error("ProducerFenced", 90, "A newer producer with the same id exists.")
UnknownTopicId = _error("UnknownTopicId", 100, "The topic id is not known.")
