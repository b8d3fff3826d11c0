"""What-if runs (``chatroute whatif``): a recorded day's respondents' actions, replayed under
another configuration.

Under a change, conversations reach other respondents than in the recording, while the
recording's answers, transfers and snoozes name the respondent who held the conversation
then. Taken as they are, they would be refused ("respondent does not hold conversation"):
the new holder would never answer, be counted unanswered, and be paused by an answer deadline,
all because of the replay, not of the change. So in the change's run, such an action is its
holder's in that run: whoever holds the conversation answers, transfers or snoozes it when
the recording says it was done. Service times are the recording's; who serves is the run's.
"""

from __future__ import annotations

from dataclasses import replace

from chatroute.domain.commands import (
    Command,
    ConversationSnoozed,
    ConversationTransferred,
    MessagePosted,
)
from chatroute.domain.model import State
from chatroute.domain.ports import TenantView

ACTIONS = (MessagePosted, ConversationTransferred, ConversationSnoozed)


def holders_act(view: TenantView, command: Command) -> Command:
    """``command``, a respondent's action on an assigned conversation, as its holder's."""
    if not isinstance(command, ACTIONS) or command.respondent is None:
        return command
    if isinstance(command, MessagePosted) and command.author != "respondent":
        return command
    conversation = view.conversation(command.conversation)
    if conversation is None or conversation.state != State.ASSIGNED:
        return command
    holder = conversation.respondent
    if holder is None or holder == command.respondent:
        return command
    return replace(command, respondent=holder)
