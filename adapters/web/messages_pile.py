"""The pile page's messages (one pile: its status, remote commands and frames), in Chinese and English:
``key -> (中文, English)``, merged into ``catalogue.MESSAGES``.

``BUILT`` names the keys its templates build from a value (``_("command." ~ name)``) and every value
they take, so a test can check each exists.
"""

from __future__ import annotations

BUILT: dict[str, tuple[str, ...]] = {
    "command.": ("reboot", "set_parameters", "push_tariff", "read_realtime"),  # domain.registry.PILE_COMMANDS
    "sent.": ("start", "stop", "reboot", "push_tariff", "enable", "disable"),
    "frames.direction.": ("in", "out"),
}

MESSAGES_PILE: dict[str, tuple[str, str]] = {
    "pile.title": ("充电桩 {pile_no}", "Pile {pile_no}"),
    "pile.back": ("返回充电桩列表", "Back to the piles"),
    "pile.facts": ("基本信息", "Facts"),
    "pile.model": ("型号与协议", "Model and protocol"),
    "pile.protocol": ("协议版本", "protocol version"),
    "pile.state": ("状态", "State"),
    "pile.enabled": ("启用", "enabled"),
    "pile.online_since": ("在线，自", "online since"),
    "pile.offline_since": ("离线，自", "offline since"),
    "pile.never_online": ("从未上线", "never online"),
    "pile.gateway": ("网关", "Gateway"),
    "pile.last_seen": ("最近通信", "Last seen"),
    "pile.heartbeats": ("心跳 {count} 次，最近一次 {at}", "{count} heartbeats, the last at {at}"),
    "pile.no_heartbeat": ("尚无心跳", "no heartbeat yet"),
    "pile.last_frame": ("最近上行报文", "Newest frame from the pile"),
    "pile.tariff": ("计费规则", "Tariff"),
    "pile.no_tariff": ("未设置计费规则", "no tariff assigned"),
    "pile.tariff_version": ("版本 {version}", "version {version}"),
    "pile.holds": ("桩上计费模型：版本 {version}", "the pile holds version {version}"),
    "pile.holds_none": ("桩尚未确认计费模型", "the pile has not confirmed a billing model"),
    "pile.guns": ("充电口实时状态", "Guns, live"),
    "pile.session": ("订单", "order"),
    # remote commands
    "pile.commands": ("远程控制", "Remote commands"),
    "pile.reboot": ("远程重启", "Reboot"),
    "pile.push_tariff": ("下发计费规则", "Push the tariff"),
    "pile.start": ("调试启动", "Start for commissioning"),
    "pile.start_gun": ("充电口", "Gun"),
    "pile.stop": ("停止充电", "Stop charging"),
    "pile.enable": ("启用充电桩", "Enable the pile"),
    "pile.disable": ("停用充电桩", "Disable the pile"),
    "pile.disable_reason": ("停用原因", "Reason for disabling"),
    "pile.commands_note": ("指令经账本发出：桩离线时，上线后下发。", "Commands go through the ledger: an offline pile "
                           "gets them when it comes online."),
    "pile.last_command": ("最近指令", "Last command"),
    "pile.no_command": ("尚未发出指令", "no command sent yet"),
    "pile.command_by": ("{command}，{author} 于 {at}", "{command} by {author} at {at}"),
    "pile.answer": ("桩的应答", "The pile's answer"),
    "pile.answer_ok": ("成功", "succeeded"),
    "pile.answer_failed": ("失败", "failed"),
    "pile.answer_waiting": ("等待桩应答", "waiting for the pile"),
    "command.reboot": ("远程重启", "reboot"),
    "command.set_parameters": ("设置工作参数", "set parameters"),
    "command.push_tariff": ("下发计费模型", "push tariff"),
    "command.read_realtime": ("读取实时数据", "read realtime data"),
    "sent.start": ("已发出调试启动，订单 {trade_no}", "Commissioning start sent: order {trade_no}"),
    "sent.stop": ("已请求停止订单 {trade_no}", "Stop asked for order {trade_no}"),
    "sent.reboot": ("已发出远程重启，桩的应答将显示在下方", "Reboot sent; the pile's answer shows below"),
    "sent.push_tariff": ("已下发计费规则，桩的应答将显示在下方", "Tariff pushed; the pile's answer shows below"),
    "sent.enable": ("已启用", "Enabled"),
    "sent.disable": ("已停用", "Disabled"),
    # frames
    "frames.title": ("报文记录", "Frames"),
    "frames.note": ("网关记录登录后的每一帧收发报文（心跳只计数），每桩保留最新 {kept} 帧；数据库故障期间的报文可能丢失。",
                    "The gateway records every frame to and from the pile after its login (heartbeats only "
                    "counted) and keeps the newest {kept} a pile; frames may be lost while the database is away."),
    "frames.none": ("尚无报文。", "No frames yet."),
    "frames.at": ("时间", "Time"),
    "frames.direction": ("方向", "Direction"),
    "frames.direction.in": ("上行 ↑", "in ↑"),
    "frames.direction.out": ("下行 ↓", "out ↓"),
    "frames.type": ("帧类型", "Type"),
    "frames.seq": ("序号", "Seq"),
    "frames.content": ("内容", "Content"),
    "frames.refused": ("边界拒绝", "refused"),
    "frames.undecoded": ("无法解析", "does not decode"),
    "frames.hex": ("原始数据", "raw bytes"),
    "frames.older": ("更早的报文", "Older frames"),
    "frames.newest": ("最新报文", "Newest frames"),
}
