"""Connector status (``query_station_status``, ``notification_stationStatus``) and station statistics
(``query_station_stats``, part 2 of the standard: its fields are the common transcription, unconfirmed
against the 2016 text)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from adapters.interconnect.tcec.fields import ConnectorId, Date, Energy, EquipmentId, Int, StationId
from adapters.interconnect.tcec.models import codes
from adapters.interconnect.tcec.models.base import Model

MAX_STATIONS = 50  # query_station_status.StationIDs


class ConnectorStatusInfo(Model):
    ConnectorID: ConnectorId
    Status: codes.ConnectorStatus
    ParkStatus: codes.ParkStatus | None = None
    LockStatus: codes.LockStatus | None = None


class StationStatusInfo(Model):
    StationID: StationId
    ConnectorStatusInfos: list[ConnectorStatusInfo] = Field(max_length=1024)


class StationStatusRequest(Model):
    StationIDs: list[StationId] = Field(min_length=1, max_length=MAX_STATIONS)


class StationStatusResponse(Model):
    Total: Annotated[Int, Field(ge=0)]
    StationStatusInfos: list[StationStatusInfo] = Field(max_length=MAX_STATIONS)


class StationStatusNotification(Model):
    """``notification_stationStatus``: one connector's new status."""

    ConnectorStatusInfo: ConnectorStatusInfo


class StationStatusAck(Model):
    Status: codes.NotificationStatus


class StationStatsRequest(Model):
    StationID: StationId
    StartTime: Date
    EndTime: Date


class ConnectorStatsInfo(Model):
    ConnectorID: ConnectorId
    ConnectorElectricity: Energy


class EquipmentStatsInfo(Model):
    EquipmentID: EquipmentId
    EquipmentElectricity: Energy
    ConnectorStatsInfos: list[ConnectorStatsInfo] = Field(max_length=256)


class StationStats(Model):
    StationID: StationId
    StartTime: Date
    EndTime: Date
    StationElectricity: Energy
    EquipmentStatsInfos: list[EquipmentStatsInfo] = Field(max_length=1024)


class StationStatsResponse(Model):
    StationStats: StationStats
