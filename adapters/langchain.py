"""LangChain integration: a chat history that feeds the hook, and a chat model on the newest published version.

    history = AgentMemChatHistory(memory=mem, user_id="u1", session_id="s1")
    llm = ChatAgentMem(memory=mem, user_id="u1")

`mem` is a `Memory`, or a `MemoryClient` for an application that reaches
agentmem over HTTP (then `user_id` is the token's own user, or the one an
operator's token acts for).

Each human message added to the history is observed (facts extracted and
queued for the weights); the chat model answers from the weights alone, so a
new session with an empty history still knows what was said in an old one.
"""

from __future__ import annotations

import logging
from typing import Any, Iterator

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import ConfigDict, Field

from ..client import MemoryClient
from ..facts import Fact
from ..memory import Memory
from ..serving.replica import cut_at_stop
from ..storage.quota import QuotaExceeded

log = logging.getLogger(__name__)


class AgentMemChatHistory(BaseChatMessageHistory):
    """One session's transcript; every human message added is handed to `observe`."""

    def __init__(self, memory: Memory | MemoryClient, user_id: str = "default", session_id: str = "default"):
        if not isinstance(user_id, str) or not user_id.strip():
            raise ValueError("user_id must be non-empty text")
        self.memory = memory
        self.user_id = user_id
        self.session_id = session_id
        self._messages: list[BaseMessage] = []
        self.observed: list[Fact] = []  # what the hook made of this session's human turns, with id and status
        self.not_learned: list[str] = []  # why a human turn's facts were not taken (the user's quota), one per turn

    @property
    def messages(self) -> list[BaseMessage]:
        return list(self._messages)

    def add_messages(self, messages: list[BaseMessage]) -> None:
        for m in messages:
            before = self._messages[-1:]
            self._messages.append(m)
            if isinstance(m, HumanMessage):
                # with the assistant's message before it, a short reply answers its question ("Lisbon.")
                asked = [b for b in before if isinstance(b, AIMessage)]
                try:
                    self.observed.extend(self.memory.observe([*asked, m], user_id=self.user_id))
                except QuotaExceeded as e:  # the conversation goes on; only its learning waits
                    log.warning("not learned: %s", e)
                    self.not_learned.append(str(e))

    def clear(self) -> None:
        """Forget the transcript (a new conversation); what was learned stays in the weights."""
        self._messages = []


def _cut(text: str, stop: list[str] | None) -> str:
    cut = cut_at_stop(text, stop)
    return text if cut is None else cut


class ChatAgentMem(BaseChatModel):
    """A chat model answering from the newest published version (through the server when `memory` has one)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    memory: Memory | MemoryClient
    user_id: str = "default"
    max_tokens: int = Field(128, ge=1)

    @property
    def _llm_type(self) -> str:
        return "agentmem"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"user_id": self.user_id, "max_tokens": self.max_tokens}

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        text = _cut(self.memory.chat(messages, user_id=self.user_id, max_new_tokens=self.max_tokens), stop)
        meta = {"agentmem_version": self._version()}
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text, response_metadata=meta))])

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        sent = ""
        pieces = self.memory.stream_chat(messages, user_id=self.user_id, max_new_tokens=self.max_tokens)
        try:
            for piece in pieces:
                new = _cut(sent + piece, stop)[len(sent):]
                if new:
                    chunk = ChatGenerationChunk(message=AIMessageChunk(content=new))
                    if run_manager:
                        run_manager.on_llm_new_token(new, chunk=chunk)
                    yield chunk
                    sent += new
                if len(new) < len(piece):
                    return
        finally:
            pieces.close()
        yield ChatGenerationChunk(message=AIMessageChunk(content="", response_metadata={
            "agentmem_version": self._version()}))

    def _version(self) -> int:
        server = self.memory.server
        return server.last_version if server is not None else self.memory.version

    def bind_tools(self, tools, **kwargs):
        if tools:
            raise NotImplementedError(
                "ChatAgentMem does not call tools (the bundled model was not trained to); "
                "use it in create_agent with tools=[]"
            )
        return self
