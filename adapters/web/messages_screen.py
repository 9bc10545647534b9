"""The messages of the 经营大屏 (``screen.*``): ``key -> (中文, English)``.

Merged into :data:`adapters.web.catalogue.MESSAGES` (one catalogue, so the same checks hold: every key
in both languages, every key a template names present).
"""

from __future__ import annotations

MESSAGES_SCREEN: dict[str, tuple[str, str]] = {
    "nav.screen": ("经营大屏", "Big screen"),
    # the big screen
    "screen.title": ("经营大屏", "Operations screen"),
    "screen.all_tenants": ("全平台", "All tenants"),
    "screen.pick": ("选择要显示的运营商：", "Pick the tenant to show:"),
    "screen.no_tenants": ("还没有运营商。", "No tenants yet."),
    "screen.exit": ("返回控制台", "Back to the console"),
    "screen.rank_by_revenue": ("按收入排名", "Rank by revenue"),
    "screen.rank_by_energy": ("按电量排名", "Rank by energy"),
    "screen.online": ("在线充电桩", "Piles online"),
    "screen.offline": ("离线充电桩", "Piles offline"),
    "screen.faulted": ("故障充电桩", "Piles faulted"),
    "screen.charging": ("充电中", "Guns charging"),
    "screen.power_now": ("当前功率", "Power now"),
    "screen.power_kw": ("功率 (kW)", "Power (kW)"),
    "screen.today": ("今日", "Today"),
    "screen.month": ("本月", "This month"),
    "screen.energy": ("充电量", "Energy"),
    "screen.revenue": ("收入", "Revenue"),
    "screen.sessions": ("订单数", "Sessions"),
    "screen.utilisation": ("利用率", "Utilisation"),
    "screen.curve": ("24 小时功率曲线", "Power, last 24 hours"),
    "screen.top_by_energy": ("今日站点排名（电量）", "Top stations today (energy)"),
    "screen.top_by_revenue": ("今日站点排名（收入）", "Top stations today (revenue)"),
    "screen.no_stations": ("还没有站点。", "No stations yet."),
    "screen.alarms": ("实时告警", "Live alarms"),
    "screen.no_alarms": ("当前没有告警。", "No open alarms."),
    "screen.alarm.fault": ("故障", "Fault"),
    "screen.alarm.lost_heartbeat": ("心跳丢失", "Lost heartbeat"),
    "screen.alarm.pile_offline": ("桩离线", "Pile offline"),
    "screen.alarm.frame_refused": ("报文被拒", "Frames refused"),
    "screen.alarm.session_failed": ("启动失败", "Start failed"),
    "screen.alarm.session_abandoned": ("订单异常结束", "Session abandoned"),
    "screen.alarm.session_fault": ("充电中故障", "Fault while charging"),
    "screen.alarm.meter_anomaly": ("电表读数异常", "Meter anomaly"),
    "screen.alarm.pricing_difference": ("计费差异", "Pricing difference"),
}
