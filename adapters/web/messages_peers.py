"""The peers pages' messages (互联互通: the tenant's T/CEC peers, their links' health, the settlement,
one peer's roaming orders), in Chinese and English: ``key -> (中文, English)``, merged into
``catalogue.MESSAGES``.

``BUILT`` names the keys templates build from a value (``_("peers.role." ~ peer.role)``) and every
value they take, so a test can check each exists.
"""

from __future__ import annotations

BUILT: dict[str, tuple[str, ...]] = {
    "peers.role.": ("customer", "infrastructure", "regulator"),
    "peers.direction.": ("as_infrastructure", "as_customer"),
    "peers.state.": ("requested", "starting", "charging", "stopping", "finished", "failed", "abandoned", "settled"),
}

MESSAGES_PEERS: dict[str, tuple[str, str]] = {
    "nav.peers": ("互联互通", "Peers"),
    "peers.title": ("互联互通", "Peers"),
    "peers.help": ("按 T/CEC 与本运营商互联的平台、每条链路的健康状况，以及按自然日（北京时间）的应收应付。",
                   "The platforms linked with this operator over T/CEC, the health of each link, and what each "
                   "owes us and we owe it per day (China time)."),
    "peers.none": ("还没有互联平台。", "No peer platforms yet."),
    "peers.peer": ("平台", "Peer"),
    "peers.role": ("角色", "Role"),
    "peers.role.customer": ("客户平台（其用户在我方桩充电）", "Customer platform (its users charge on our piles)"),
    "peers.role.infrastructure": ("设施平台（我方用户在其桩充电）",
                                  "Infrastructure platform (our drivers charge on its piles)"),
    "peers.role.regulator": ("监管平台", "Regulator"),
    "peers.link": ("链路", "Link"),
    "peers.enabled": ("启用", "enabled"),
    "peers.disabled": ("已停用", "disabled"),
    "peers.pending": ("待推送", "Pending pushes"),
    "peers.retrying": ("重试中", "Retrying"),
    "peers.failed": ("已放弃", "Given up"),
    "peers.last_delivered": ("最近送达", "Last delivered"),
    "peers.delivered": ("近 30 天送达 {count} 条", "{count} delivered in 30 days"),
    "peers.lag": ("积压时长", "Lag"),
    "peers.last_error": ("最近错误", "Last error"),
    "peers.last_inbound": ("对方最近来访", "Last call from the peer"),
    "peers.our_operator_id": ("我方运营商 ID", "Our OperatorID"),
    "peers.base_url": ("对方接口地址", "The peer's base URL"),
    "peers.back": ("← 全部互联平台", "← All peers"),
    # the settlement
    "peers.settlement": ("按日结算", "Settlement per day"),
    "peers.settlement.days": ("{start} 至 {end}（北京时间）", "{start} to {end} (China days)"),
    "peers.settlement.help": ("应收：对方用户在我方桩上当天结束的订单（即我方每日对账 check_charge_orders 发给对方的）；"
                              "应付：我方用户在对方桩上已结算、结束时间在当天的订单。",
                              "Receivable: the peer's users' orders on our piles that ended that day (what our daily "
                              "check_charge_orders sends the peer). Payable: our drivers' settled orders on the "
                              "peer's piles whose end time is that day."),
    "peers.settlement.none": ("近 31 天没有互联订单。", "No roaming orders in the last 31 days."),
    "peers.day": ("日期", "Day"),
    "peers.receivable": ("应收", "Receivable"),
    "peers.payable": ("应付", "Payable"),
    "peers.orders": ("订单数", "Orders"),
    "peers.energy": ("电量（kWh）", "Energy (kWh)"),
    "peers.total": ("金额（元）", "Amount (yuan)"),
    # one peer's orders
    "peers.orders.title": ("互联订单", "Roaming orders"),
    "peers.orders.help": ("双向：对方用户在我方桩上（链接到订单），我方用户在对方桩上；按请求时间从新到旧，每页 50 条。",
                          "Both directions: the peer's users on our piles (linked to the order) and our drivers on "
                          "the peer's piles; newest first, 50 a page."),
    "peers.orders.none": ("没有订单。", "No orders."),
    "peers.direction": ("方向", "Direction"),
    "peers.direction.as_infrastructure": ("对方用户 → 我方桩", "Their user, our pile"),
    "peers.direction.as_customer": ("我方用户 → 对方桩", "Our driver, their pile"),
    "peers.start_charge_seq": ("充电订单号（StartChargeSeq）", "StartChargeSeq"),
    "peers.requested_at": ("请求时间", "Requested"),
    "peers.ended": ("结束 {at}", "ended {at}"),
    "peers.connector": ("充电接口", "Connector"),
    "peers.order_or_driver": ("订单 / 用户", "Order / driver"),
    "peers.disputes": ("对方订单有异议 {count} 次", "{count} disputed order(s)"),
    "peers.split": ("电费 {electricity} · 服务费 {service}", "electricity {electricity} · service {service}"),
    "peers.state.requested": ("已请求", "requested"),
    "peers.state.starting": ("启动中", "starting"),
    "peers.state.charging": ("充电中", "charging"),
    "peers.state.stopping": ("停止中", "stopping"),
    "peers.state.finished": ("已完成", "finished"),
    "peers.state.failed": ("失败", "failed"),
    "peers.state.abandoned": ("已放弃", "abandoned"),
    "peers.state.settled": ("已结算", "settled"),
}
