"""``query_stations_info``: the paged catalogue of stations, their equipment and connectors; and
``notification_stationInfo`` (T/CEC 102-2021, cited by provincial regulators' guides): one station's
catalogue entry pushed when it changes, answered with ``Status`` as ``notification_stationStatus`` is.

Lengths are ours, at or above the standard's (a peer's long address must not lose us its whole page);
enums are the 2016 standard's (a regulator that redefines them maps them on its own link).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from adapters.interconnect.tcec.fields import (AreaCode, ConnectorId, CountryCode, Date, EquipmentId, Int, Latitude,
                                               Longitude, Measure, OperatorId, StationId, Text, Time)
from adapters.interconnect.tcec.models import codes
from adapters.interconnect.tcec.models.base import Model


class ConnectorInfo(Model):
    ConnectorID: ConnectorId
    ConnectorName: Text(50) | None = None
    ConnectorType: codes.ConnectorType
    VoltageUpperLimits: Measure
    VoltageLowerLimits: Measure
    Current: Measure
    Power: Measure  # kW
    ParkNo: Text(20) | None = None
    NationalStandard: codes.NationalStandard | None = None


class EquipmentInfo(Model):
    EquipmentID: EquipmentId
    ManufacturerID: Text(30) | None = None
    ManufacturerName: Text(60) | None = None
    EquipmentModel: Text(40) | None = None  # "EquipmentMode" in a few documents: accepted (dialect.py)
    ProductionDate: Date | None = None
    EquipmentType: codes.EquipmentType
    ConnectorInfos: list[ConnectorInfo] = Field(max_length=256)
    EquipmentLng: Longitude | None = None
    EquipmentLat: Latitude | None = None
    Power: Measure  # kW
    EquipmentName: Text(60) | None = None


class StationInfo(Model):
    StationID: StationId
    OperatorID: OperatorId
    EquipmentOwnerID: OperatorId
    StationName: Text(100)
    CountryCode: CountryCode
    AreaCode: AreaCode
    Address: Text(200)
    StationTel: Text(30) | None = None
    ServiceTel: Text(30)
    StationType: codes.StationType
    StationStatus: codes.StationStatus
    ParkNums: Annotated[Int, Field(ge=0)]
    StationLng: Longitude  # GCJ-02
    StationLat: Latitude
    SiteGuide: Text(200) | None = None
    Construction: codes.Construction
    Pictures: list[Text(500)] | None = Field(default=None, max_length=32)
    MatchCars: Text(200) | None = None
    ParkInfo: Text(200) | None = None
    BusineHours: Text(200) | None = None  # sic, the standard's spelling
    ElectricityFee: Text(500) | None = None
    ServiceFee: Text(500) | None = None
    ParkFee: Text(200) | None = None
    Payment: Text(50) | None = None
    SupportOrder: Annotated[Int, Field(ge=0, le=1)] | None = None
    Remark: Text(200) | None = None
    EquipmentInfos: list[EquipmentInfo] = Field(max_length=1024)


class StationsInfoRequest(Model):
    LastQueryTime: Time | None = None  # empty or absent: everything
    PageNo: Annotated[Int, Field(ge=1)] = 1
    PageSize: Annotated[Int, Field(ge=1, le=100)] = 10


class StationsInfoResponse(Model):
    PageNo: Annotated[Int, Field(ge=1)]
    PageCount: Annotated[Int, Field(ge=0)]
    ItemSize: Annotated[Int, Field(ge=0)]
    StationInfos: list[StationInfo] = Field(max_length=100)


class StationInfoNotification(Model):
    """``notification_stationInfo``: one station's catalogue entry, whole, as it is now."""

    StationInfo: StationInfo


class StationInfoAck(Model):
    Status: codes.NotificationStatus
