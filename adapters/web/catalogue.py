"""Every message the console shows, in Chinese and English: ``key -> (中文, English)``.

One dict, so a message cannot exist in one language only. Keys are dotted by page (``nav.*``,
``login.*``, ``stations.*``...). Templates say ``{{ _("key") }}``; a key missing here is an error
when the page renders (``tests/unit/test_console_catalogue.py`` checks every key the templates use).
Messages may carry ``{name}`` fields, filled by ``_("key", name=...)`` after escaping.
"""

from __future__ import annotations

from adapters.web.messages_ops import MESSAGES_OPS
from adapters.web.messages_peers import MESSAGES_PEERS
from adapters.web.messages_pile import MESSAGES_PILE
from adapters.web.messages_screen import MESSAGES_SCREEN

MESSAGES: dict[str, tuple[str, str]] = {
    "app.name": ("充电运营平台", "Charging operations"),
    # navigation
    "nav.overview": ("运营概览", "Overview"),
    "nav.stations": ("站点信息", "Stations"),
    "nav.piles": ("充电桩", "Piles"),
    "nav.tariffs": ("计费规则", "Tariffs"),
    "nav.orders": ("充电订单", "Orders"),
    "nav.revenue": ("营收统计", "Revenue"),
    "nav.alarms": ("告警", "Alarms"),
    "nav.oplog": ("操作日志", "Operation log"),
    "nav.users": ("用户与角色", "Users"),
    "nav.menu": ("菜单", "Menu"),
    "nav.logout": ("退出登录", "Log out"),
    "nav.language": ("English", "中文"),
    "role.platform_admin": ("平台管理员", "Platform admin"),
    "role.tenant_admin": ("运营商管理员", "Tenant admin"),
    "role.agent": ("代理商", "Agent"),
    # sign-in
    "login.title": ("登录", "Sign in"),
    "login.username": ("用户名", "User name"),
    "login.password": ("密码", "Password"),
    "login.submit": ("登录", "Sign in"),
    "login.bad_credentials": ("用户名或密码错误", "Unknown user or wrong password"),
    "login.user_disabled": ("该用户已停用", "This user is disabled"),
    "login.too_many_attempts": ("登录失败次数过多，请 {seconds} 秒后再试",
                                "Too many failed sign-ins; try again in {seconds} s"),
    "login.login_busy": ("正在处理的登录过多，请稍后再试", "Too many sign-ins are being checked; try again shortly"),
    "login.signed_out": ("您已退出登录", "You are signed out"),
    # errors
    "error.title": ("出错了", "Something went wrong"),
    "error.403.title": ("无权操作", "Not allowed"),
    "error.403.text": ("您的角色不能执行此操作。", "Your role may not do this."),
    "error.csrf.title": ("请求已拒绝", "Request refused"),
    "error.csrf.text": ("表单已过期或缺少安全令牌（CSRF）。请返回页面刷新后重试。",
                        "The form has expired or lacks its security token (CSRF). Go back, reload the page "
                        "and try again."),
    "error.404.title": ("页面不存在", "Page not found"),
    "error.404.text": ("没有这个页面，或者它不在您的权限范围内。", "There is no such page, or it is outside your scope."),
    "error.back": ("返回概览", "Back to the overview"),
    "form.invalid": ("请更正标出的字段", "Please correct the marked fields"),
    "form.refused": ("操作被拒绝：{message}", "Refused: {message}"),
    "form.save": ("保存", "Save"),
    "form.cancel": ("取消", "Cancel"),
    # overview
    "home.title": ("运营概览", "Overview"),
    "home.welcome": ("欢迎，{name}", "Welcome, {name}"),
    "home.stations": ("站点", "Stations"),
    "home.piles": ("充电桩", "Piles"),
    "home.online": ("在线", "Online"),
    "home.charging": ("充电中的充电口", "Guns charging"),
    # stations
    "stations.title": ("站点信息", "Stations"),
    "stations.new": ("新建站点", "New station"),
    "stations.none": ("还没有站点。", "No stations yet."),
    "stations.name": ("站点名称", "Name"),
    "stations.address": ("地址", "Address"),
    "stations.latitude": ("纬度", "Latitude"),
    "stations.longitude": ("经度", "Longitude"),
    "stations.timezone": ("时区", "Time zone"),
    "stations.tariff": ("计费规则", "Tariff"),
    "stations.no_tariff": ("未设置", "none"),
    "stations.piles": ("充电桩", "Piles"),
    "stations.created": ("创建时间", "Created"),
    "stations.pending": ("刚刚创建，列表稍后更新。", "Just created; the list catches up in a moment."),
    # piles and guns
    "piles.title": ("充电桩", "Piles"),
    "piles.new": ("添加充电桩", "Add a pile"),
    "piles.none": ("还没有充电桩。", "No piles yet."),
    "piles.pile_no": ("桩编号", "Pile number"),
    "piles.station": ("站点", "Station"),
    "piles.kind": ("类型", "Kind"),
    "piles.kind.DC": ("直流", "DC"),
    "piles.kind.AC": ("交流", "AC"),
    "piles.gun_count": ("充电口数", "Guns"),
    "piles.link": ("连接", "Link"),
    "piles.online": ("在线", "online"),
    "piles.offline": ("离线", "offline"),
    "piles.disabled": ("已停用", "disabled"),
    "piles.since": ("自", "since"),
    "piles.guns": ("充电口", "Guns"),
    "piles.firmware": ("程序版本", "Firmware"),
    "piles.live": ("实时", "live"),
    "piles.all_stations": ("全部站点", "All stations"),
    "piles.filter": ("筛选", "Filter"),
    "gun.idle": ("空闲", "idle"),
    "gun.charging": ("充电中", "charging"),
    "gun.offline": ("离线", "offline"),
    "gun.fault": ("故障", "fault"),
    "gun.plugged": ("已插枪", "plugged in"),
    "gun.energy": ("电量", "energy"),
}
MESSAGES.update(MESSAGES_OPS)  # the operations pages' (adapters/web/messages_ops.py)
MESSAGES.update(MESSAGES_PILE)  # one pile's page: adapters/web/messages_pile.py
MESSAGES.update(MESSAGES_SCREEN)  # the 经营大屏 and the driver H5 pages: adapters/web/messages_screen.py
MESSAGES.update(MESSAGES_PEERS)  # 互联互通, the tenant's T/CEC peers: adapters/web/messages_peers.py
