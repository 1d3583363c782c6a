"""The shipped app's calls, written once: what the `app` scenario's phones do, and the grammar
tests/loadtests/test_app_scenario.py checks every phone's call log against.

Read in the app's source, repository marvinjoel2001/habitto at commit 49cde26 (the paths
below are relative to its root). Only the chat stack's calls are made: the home tab's
matching calls (`/api/matches/...`, MatchRequestsPage, `_loadPendingMatchRequests`) belong
to the host backend and are left out.

A phone's session, one screen after the other (`Phone` in loadtests/app_users.py):

    LOGIN          log in, splash, home
    CHAT_TAB       the chat tab: inbox and property-notification sockets, conversations, badge
    then, by kind ("phones" in scenarios.toml):
      chatter      OPEN_CHAT (from the list, or NEW_CHAT through the user list), SEND x n, LEAVE_CHAT
      browser      OPEN_CHAT + reading + LEAVE_CHAT, PULL_TO_REFRESH, or NOTIFICATIONS_PAGE
      idle         nothing: the sockets stay open
    AWAY           (churn) the network is lost: every socket drops; a chat on screen is
                   left when the phone is back (its room socket never reconnects)

Calls that run beside the screens (their own "lane" in the call log): the inbox socket's
reconnects after a drop, `chat_page.dart _scheduleInboxReconnect` (waits 1 s, then 2, 4, 8
and 10 s from then on; the delay doubles after every attempt and is never reset while the
chat tab lives), and the property-notification socket's, `_schedulePropertyNotifReconnect`
(every 2 s). The room socket has no reconnect (`conversation_page.dart` only shows "connection
closed"). A failed connect reaches both `onError` and `onDone`, so the app schedules two
timers for one failure; the phones schedule one (the issue's schedule), see docs/loadtest.md.

A 401 on any call (api_service.dart's interceptor) is followed by `POST /api/refresh/` and the
same call again: `collapse_refreshes` checks that pattern and removes it before the grammar.
"""

import re

CHAT = "lib/features/chat/presentation/pages/chat_page.dart"
CONVERSATION = "lib/features/chat/presentation/pages/conversation_page.dart"

# Every call a phone makes: its log name -> where the app makes it.
CALLS = {
    "POST /api/login/": "lib/features/auth/presentation/pages/login_page.dart -> auth_service.dart login()",
    "GET /api/profiles/me/": "lib/features/auth/presentation/pages/splash_page.dart _bootstrap(), then "
                             "lib/features/home/presentation/pages/home_page.dart _initUserModeFromProfile() "
                             "-> profile_service.dart getCurrentProfile()",
    "WS open inbox": f"{CHAT} _loadMessages() -> _openInboxWebSocket(): /ws/chat/inbox/<me>/?token=",
    "WS open property": f"{CHAT} _loadMessages() -> _openPropertyNotificationsSocket(): "
                        "/ws/property-notifications/<me>/?token=",
    "GET /api/messages/conversations/": f"{CHAT} _loadMessages() -> message_service.dart getConversations()",
    "GET /api/notifications/?is_read": f"{CHAT} _loadUnreadNotificationsCount() -> notification_service.dart "
                                       "unreadCount()",
    "POST /api/messages/mark_thread_read/": f"{CHAT} _buildMessageTile onTap -> message_service.dart "
                                            "markThreadRead(), before the page opens",
    "GET /api/users/": "lib/features/chat/presentation/pages/user_list_page.dart _loadUsers() -> "
                       "user_service.dart getAllUsers()",
    "GET /api/profiles/?user_id": f"{CONVERSATION} _loadCounterpartAvatar() (no avatar known) -> "
                                  "profile_service.dart getProfileByUserId()",
    "WS open room": f"{CONVERSATION} _openWebSocket(): /ws/chat/<low>-<high>/?token=",
    "GET /api/messages/thread/?other_user_id&page&page_size": f"{CONVERSATION} _loadConversation() -> "
                                                               "message_service.dart getThread(page: 1, pageSize: 50)",
    "WS send room": f"{CONVERSATION} _sendMessage(): {{sender, receiver, content}}; failed without an echo in 5 s",
    "WS close room": f"{CONVERSATION} dispose(): _wsChannel.sink.close()",
    "GET /api/notifications/?page&page_size": f"{CHAT} _NotificationsPageState._load() -> "
                                              "notification_service.dart list(pageSize: 50)",
    "away": "churn: the phone's network is lost for a while (not an app call)",
    "POST /api/refresh/": "lib/core/services/api_service.dart onError 401 -> _refreshToken() "
                          "(then /api/token/refresh/ if it fails), then the call again",
}  # fmt: skip

THREAD_PAGE_SIZE = 50  # getThread(page: 1, pageSize: 50)
NOTIFICATIONS_PAGE_SIZE = 50  # _NotificationsPageState._load(): list(pageSize: 50)
INBOX_FIRST_DELAY, INBOX_MAX_DELAY = 1.0, 10.0  # _inboxReconnectDelayMs: 1000, then *2, clamp(1000, 10000)
NOTIFICATION_RECONNECT_DELAY = 2.0  # _schedulePropertyNotifReconnect: Duration(seconds: 2)


def inbox_delays(attempts):
    """The inbox socket's reconnect waits of the first `attempts` attempts: 1, 2, 4, 8, 10, 10 ... s."""
    return [min(INBOX_FIRST_DELAY * 2**n, INBOX_MAX_DELAY) for n in range(attempts)]


# --- the grammar ------------------------------------------------------------------------------
_CODES = {name: chr(0x41 + i) for i, name in enumerate(CALLS)}


def _calls(*names):
    return "".join(re.escape(_CODES[name]) for name in names)


def _optional(*names):
    return f"(?:{_calls(*names)})?"


LOGIN = _calls("POST /api/login/", "GET /api/profiles/me/", "GET /api/profiles/me/")
CHAT_TAB = _calls("WS open inbox", "WS open property", "GET /api/messages/conversations/",
                  "GET /api/notifications/?is_read")
# The chat page: counterpart's profile (when the tile showed no avatar), room socket, first page.
_CHAT_PAGE = (_optional("GET /api/profiles/?user_id") + _calls("WS open room")
              + _calls("GET /api/messages/thread/?other_user_id&page&page_size"))
OPEN_CHAT = f"(?:{_calls('POST /api/messages/mark_thread_read/')}|{_calls('GET /api/users/')}){_CHAT_PAGE}"
SEND = _calls("WS send room")
AWAY = _calls("away")
LEAVE_CHAT = _calls("WS close room")
# RefreshIndicator: _loadMessages() (which reopens a socket that is down), the badge.
PULL_TO_REFRESH = (_optional("WS open inbox") + _optional("WS open property")
                   + _calls("GET /api/messages/conversations/", "GET /api/notifications/?is_read"))
# The page's list, then (Navigator.push(...).then) the badge when the user comes back.
NOTIFICATIONS_PAGE = (_calls("GET /api/notifications/?page&page_size") + f"(?:{AWAY})*"
                      + _calls("GET /api/notifications/?is_read"))

# A chat visit: the page, messages (chatters only), the network lost (then the
# phone leaves: the room socket is gone for good; it may go again while reading), the page closed.
_VISIT = f"{OPEN_CHAT}(?:{SEND})*(?:{AWAY})*{LEAVE_CHAT}"
_READ = f"{OPEN_CHAT}(?:{AWAY})*{LEAVE_CHAT}"
JOURNEYS = {
    "chatter": f"{LOGIN}{CHAT_TAB}(?:{_VISIT}|{AWAY})*",
    "browser": f"{LOGIN}{CHAT_TAB}(?:{_READ}|{PULL_TO_REFRESH}|{NOTIFICATIONS_PAGE}|{AWAY})*",
    "idle": f"{LOGIN}{CHAT_TAB}(?:{AWAY})*",
}


def collapse_refreshes(calls):
    """[(name, status)] of the screen lane -> (names with every `401, POST /api/refresh/, retry`
    replaced by the call, number of refreshes). Raises ValueError when a 401 is not followed
    by a refresh and the same call, as the app's interceptor does."""
    names, refreshes, i = [], 0, 0
    while i < len(calls):
        name, status = calls[i]
        if status == 401:
            following = [c[0] for c in calls[i + 1 : i + 3]]
            if following != ["POST /api/refresh/", name]:
                raise ValueError(f"call {i} ({name}) answered 401 and was followed by {following}, "
                                 f"not by POST /api/refresh/ and {name}")
            refreshes += 1
            i += 2
            continue
        names.append(name)
        i += 1
    return names, refreshes


def mismatch(kind, names):
    """None when the calls are a journey of this kind of phone, else where they stop matching."""
    unknown = [n for n in names if n not in _CODES]
    if unknown:
        return f"calls the app never makes: {unknown}"
    text = "".join(_CODES[n] for n in names)
    pattern = re.compile(JOURNEYS[kind])
    if pattern.fullmatch(text):
        return None
    # The longest prefix that is a whole journey: the calls after it are where it goes wrong.
    matched = max(n for n in range(len(text) + 1) if n == 0 or pattern.fullmatch(text[:n]))
    return (f"a {kind} phone's calls follow the app for {matched} calls, then: "
            f"{names[matched:matched + 6]} (all: {names})")
