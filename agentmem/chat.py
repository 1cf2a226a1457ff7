"""`agentmem chat`: a terminal assistant that learns what you tell it into its weights while you talk.

Facts are extracted from each of your turns and edited in by the background
pipeline; a line appears when one has been learned. `/new` starts a new
conversation with an empty context, so what it still knows comes from the
weights alone.
"""

from __future__ import annotations

import json
import sys
import threading
from typing import Callable, TextIO

from .adapters.langchain import AgentMemChatHistory, ChatAgentMem
from .facts import Fact
from .facts.perspective import user_subject
from .memory import Memory
from .storage.ledger import ACTIVE, FAILED, FORGOTTEN, REJECTED, SUPERSEDED

HELP = """commands:
  /new         start a new conversation (empty context; what was learned stays)
  /facts       what I have learned about you, with ids and status
  /forget ID   remove a fact from my weights
  /sleep       consolidate what I learned today
  /status      version, queue and fact counts
  /help        this list
  /quit        leave (Ctrl-D too)"""

PROMPT = "you> "


def _describe(fact: Fact, user_id: str) -> str:
    subject = "you" if fact.subject == user_subject(user_id) else fact.subject
    return f"{subject} / {fact.relation} / {fact.object}"


class ChatApp:
    def __init__(self, memory: Memory, user_id: str = "default", out: TextIO = sys.stdout,
                 read: Callable[[str], str] = input):
        self.memory, self.user_id, self.out, self.read = memory, user_id, out, read
        self.llm = ChatAgentMem(memory=memory, user_id=user_id, max_tokens=160)
        self.sessions = 0
        self.history = self._new_history()
        self.pending: dict[str, Fact] = {}
        # re-entrant: a streamed answer holds it from first to last chunk (see turn)
        self._print_lock = threading.RLock()
        self._stop = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="agentmem-chat-watch", daemon=True)

    def _new_history(self) -> AgentMemChatHistory:
        self.sessions += 1
        return AgentMemChatHistory(self.memory, user_id=self.user_id, session_id=f"s{self.sessions}")

    def say(self, text: str, prompt_again: bool = False) -> None:
        with self._print_lock:
            self.out.write(("\n" if prompt_again else "") + text + "\n" + (PROMPT if prompt_again else ""))
            self.out.flush()

    # -- learning in the background ---------------------------------------

    def _watch(self) -> None:
        while not self._stop.wait(0.3):
            for fid, fact in list(self.pending.items()):
                row = self.memory.ledger.get(fid)
                if row is None or row["status"] not in (ACTIVE, FAILED, REJECTED, SUPERSEDED, FORGOTTEN):
                    continue
                del self.pending[fid]
                if row["status"] == ACTIVE:
                    self.say(f"(learned: {_describe(fact, self.user_id)}  [{fid}, version {row['version_added']}])",
                             prompt_again=True)
                elif row["status"] != SUPERSEDED:
                    self.say(f"(could not learn {_describe(fact, self.user_id)}: {row['reason']})", prompt_again=True)

    def _noted(self, observed: list[Fact]) -> None:
        for f in observed:
            if f.status in ("queued", "spooled"):
                self.pending[f.id] = f
                self.say(f"(noted: {_describe(f, self.user_id)}; learning it)")
            elif f.status == "rejected":
                self.say(f"(not stored: {f.reason})")

    # -- commands -----------------------------------------------------------

    def command(self, line: str) -> bool:
        """Run a /command; False when the user leaves."""
        name, _, arg = line.partition(" ")
        arg = arg.strip()
        if name in ("/quit", "/exit"):
            return False
        if name == "/new":
            self.history = self._new_history()
            self.say("(new conversation: the context is empty)")
        elif name == "/facts":
            rows = self.memory.facts(user_id=self.user_id)
            if not rows:
                self.say("(no facts yet)")
            for r in rows:
                self.say(f"{r['id']}  {r['status']:<10} {_describe(Fact.parse(r['fact']), self.user_id)}")
        elif name == "/forget":
            if not arg:
                self.say("(usage: /forget ID; /facts lists the ids)")
            else:
                try:
                    self.memory.forget(arg)
                    self.say(f"(forgotten {arg}; version {self.memory.version})")
                except KeyError:
                    self.say(f"(no fact with id {arg!r})")
        elif name == "/sleep":
            try:
                self.say(json.dumps(self.memory.sleep(), indent=2))
            except NotImplementedError as e:
                self.say(f"(sleep: {e})")
        elif name == "/status":
            self.say(json.dumps(self.memory.status(), indent=2, default=str))
        elif name == "/help":
            self.say(HELP)
        else:
            self.say(f"(unknown command {name}; /help lists them)")
        return True

    def turn(self, text: str) -> str:
        before, refused = len(self.history.observed), len(self.history.not_learned)
        self.history.add_user_message(text)
        self._noted(self.history.observed[before:])
        for why in self.history.not_learned[refused:]:
            self.say(f"(not learned: {why})")
        parts = []
        # a fact learned meanwhile is announced after the answer, not in the middle of it
        with self._print_lock:
            self.out.write("assistant> ")
            self.out.flush()
            for chunk in self.llm.stream(self.history.messages):
                parts.append(chunk.content)
                self.out.write(chunk.content)
                self.out.flush()
            self.say("")
        answer = "".join(parts).strip()
        self.history.add_ai_message(answer)
        return answer

    def run(self) -> None:
        self.say("agentmem chat: tell me about yourself and I will remember it in my weights. /help for commands.")
        self._watcher.start()
        try:
            while True:
                try:
                    line = self.read(PROMPT).strip()
                except (EOFError, KeyboardInterrupt):
                    self.say("")
                    break
                if not line:
                    continue
                if line.startswith("/"):
                    if not self.command(line):
                        break
                    continue
                try:
                    self.turn(line)
                except ValueError as e:
                    self.say(f"(could not answer: {e})")
        finally:
            self._stop.set()
