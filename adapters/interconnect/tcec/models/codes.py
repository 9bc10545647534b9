"""The enumerations of T/CEC 102-2016 (note A.7), referred to as ``codes.X`` by the models.

A model's field often has the enum's own name (``ConnectorType: codes.ConnectorType``), hence the
module prefix. Ranges the standard leaves open for custom use (``FailReason`` 3..99 and friends)
are integers with bounds (``models.base.Reason``), not enums.
"""

from __future__ import annotations

from enum import IntEnum


class SuccStat(IntEnum):
    SUCCESS = 0
    FAILURE = 1


class StationType(IntEnum):
    PUBLIC = 1
    PRIVATE = 50  # 个人
    BUS = 100  # 100..103: dedicated use
    SANITATION = 101
    LOGISTICS = 102
    TAXI = 103
    OTHER = 255


class StationStatus(IntEnum):
    UNKNOWN = 0
    UNDER_CONSTRUCTION = 1
    CLOSED = 5  # closed / offline
    MAINTENANCE = 6
    IN_USE = 50


class Construction(IntEnum):
    RESIDENTIAL = 1
    PUBLIC_INSTITUTION = 2
    ENTERPRISE = 3
    OFFICE_BUILDING = 4
    INDUSTRIAL_PARK = 5
    TRANSPORT_HUB = 6
    SPORTS_CULTURE_VENUE = 7
    URBAN_GREEN_SPACE = 8
    BUILDING_PARKING = 9
    ROADSIDE_PARKING = 10
    HIGHWAY_SERVICE_AREA = 11
    OTHER = 255


class EquipmentType(IntEnum):
    DC = 1
    AC = 2
    AC_DC = 3
    WIRELESS = 4
    OTHER = 5


class ConnectorType(IntEnum):
    HOUSEHOLD_SOCKET = 1  # mode 2
    AC_SOCKET = 2  # mode 3, connection B
    AC_PLUG = 3  # mode 3, connection C (cable attached)
    DC_GUN = 4  # mode 4
    WIRELESS_PAD = 5
    OTHER = 6


class NationalStandard(IntEnum):
    GBT_2011 = 1
    GBT_2015 = 2


class ConnectorStatus(IntEnum):
    OFFLINE = 0  # 离网
    IDLE = 1
    OCCUPIED = 2  # plugged, not charging
    CHARGING = 3
    RESERVED = 4  # reserved / locked
    FAULT = 255


class ParkStatus(IntEnum):
    UNKNOWN = 0
    FREE = 10
    OCCUPIED = 50


class LockStatus(IntEnum):
    UNKNOWN = 0
    UNLOCKED = 10
    LOCKED = 50


class NotificationStatus(IntEnum):
    """The answer to ``notification_stationStatus``: 1 means "ignored": do not resend."""

    RECEIVED = 0
    IGNORED = 1


class StartChargeSeqStat(IntEnum):
    STARTING = 1
    CHARGING = 2
    STOPPING = 3
    FINISHED = 4
    UNKNOWN = 5


class ConfirmResult(IntEnum):
    """0 agreed, 1 disputed; 2..99 custom are taken as integers by the model."""

    AGREED = 0
    DISPUTED = 1
