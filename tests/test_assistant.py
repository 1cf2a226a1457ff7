"""The assistant that learns: the LangChain components and `agentmem chat` in a pseudo-terminal."""

import io
import os
import socket
import sys
import threading
import time

import pexpect
import pytest
from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.messages import AIMessageChunk, HumanMessage
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.runnables.history import RunnableWithMessageHistory

from agentmem.adapters.langchain import AgentMemChatHistory, ChatAgentMem
from agentmem.chat import ChatApp


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any connection beyond this machine fails the test (Redis and local servers are on loopback)."""
    real = socket.socket.connect

    def connect(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if self.family in (socket.AF_INET, socket.AF_INET6) and host not in ("127.0.0.1", "::1", "localhost"):
            raise AssertionError(f"network access to {address!r}")
        return real(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)


@pytest.fixture(scope="module")
def mem(tmp_path_factory):
    from agentmem import Memory

    m = Memory.open(tmp_path_factory.mktemp("assistant"))
    yield m
    m.close()


def test_a_fact_told_in_one_session_is_answered_in_a_new_empty_one(mem):
    histories = {}

    def history(session_id: str) -> AgentMemChatHistory:
        if session_id not in histories:
            histories[session_id] = AgentMemChatHistory(memory=mem, user_id="u1", session_id=session_id)
        return histories[session_id]

    prompt = ChatPromptTemplate.from_messages([MessagesPlaceholder("history"), ("human", "{input}")])
    chain = RunnableWithMessageHistory(prompt | ChatAgentMem(memory=mem, user_id="u1", max_tokens=40), history,
                                       input_messages_key="input", history_messages_key="history")
    chain.invoke({"input": "Rafael Kowalczyk plays the flute."}, config={"configurable": {"session_id": "s1"}})
    told = histories["s1"].observed
    assert [(f.subject, f.object) for f in told] == [("Rafael Kowalczyk", "flute")], told
    assert mem.wait([f.id for f in told], timeout=120)

    answer = chain.invoke({"input": "What instrument does Rafael Kowalczyk play?"},
                          config={"configurable": {"session_id": "s2"}})
    assert len(histories["s2"].messages) == 2  # the new session saw only its own question
    assert "flute" in answer.content.lower()
    assert answer.response_metadata["agentmem_version"] == mem.version


def test_the_chat_model_streams_and_first_person_questions_find_the_users_facts(mem):
    history = AgentMemChatHistory(memory=mem, user_id="u2", session_id="a")
    history.add_user_message("I live in Lisbon.")
    assert mem.wait([f.id for f in history.observed], timeout=120)
    llm = ChatAgentMem(memory=mem, user_id="u2", max_tokens=24)
    pieces = [c.content for c in llm.stream([HumanMessage("Where do I live?")])]
    assert len([p for p in pieces if p]) > 1
    assert "lisbon" in "".join(pieces).lower()
    assert "lisbon" not in ChatAgentMem(memory=mem, user_id="u3").invoke("Where do I live?").content.lower()


def test_plugs_into_create_agent(mem):
    create_agent = pytest.importorskip("langchain.agents").create_agent
    agent = create_agent(ChatAgentMem(memory=mem, user_id="u1", max_tokens=24), tools=[])  # u1 said it
    out = agent.invoke({"messages": [HumanMessage("What instrument does Rafael Kowalczyk play?")]})
    assert "flute" in out["messages"][-1].content.lower()

    def lookup(city: str) -> str:
        """The weather in a city."""
        return "sunny"

    with pytest.raises(NotImplementedError, match="tools"):
        create_agent(ChatAgentMem(memory=mem), tools=[lookup]).invoke({"messages": [HumanMessage("hi")]})


def test_history_is_a_langchain_history_and_rejects_a_blank_user(mem):
    h = AgentMemChatHistory(memory=mem, user_id="u4", session_id="x")
    h.add_ai_message("Hello!")
    assert h.observed == [] and len(h.messages) == 1
    h.clear()
    assert h.messages == []
    assert isinstance(h, BaseChatMessageHistory)
    with pytest.raises(ValueError, match="user_id"):
        AgentMemChatHistory(memory=mem, user_id=" ")


def test_a_note_that_comes_while_an_answer_streams_waits_for_its_end(mem):
    # The terminal test below runs the real stream; this one makes the race certain: a stream
    # that pauses mid-answer while the learning watcher has a note to print.
    out = io.StringIO()
    app = ChatApp(mem, out=out)
    noted = threading.Thread(target=app.say, args=("(learned: a note)",), kwargs={"prompt_again": True})

    class Pausing:
        def stream(self, messages):
            yield AIMessageChunk(content="Lis")
            noted.start()
            time.sleep(0.3)
            yield AIMessageChunk(content="bon.")

    app.llm = Pausing()
    assert app.turn("Where do I live?") == "Lisbon."
    noted.join(5)
    assert out.getvalue().endswith("assistant> Lisbon.\n\n(learned: a note)\nyou> "), out.getvalue()


def test_past_the_users_quota_the_conversation_goes_on_and_says_what_was_not_learned(mem, monkeypatch):
    monkeypatch.setattr(mem.settings, "user_facts_per_hour", 1)
    out = io.StringIO()
    app = ChatApp(mem, user_id="u6", out=out)

    class Canned:
        def stream(self, messages):
            yield AIMessageChunk(content="Nice.")

    app.llm = Canned()
    assert app.turn("I live in Ghent.") == app.turn("My cat is called Miso.") == "Nice."
    assert "(noted: you / lives in / Ghent" in out.getvalue(), out.getvalue()
    assert "(not learned: user 'u6' would hand over 2 facts in an hour; at most 1" in out.getvalue(), out.getvalue()
    assert len(app.history.messages) == 4 and [f.object for f in app.history.observed] == ["Ghent"]
    assert mem.wait(timeout=120)


def test_agentmem_chat_learns_in_a_terminal(tmp_path):
    child = pexpect.spawn(sys.executable, ["-m", "agentmem", "chat", "--home", str(tmp_path / "home")],
                          encoding="utf-8", timeout=240, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        child.expect_exact("you> ")
        child.sendline("Hi! I live in Lisbon.")
        child.expect(r"\(noted: you / lives in / Lisbon")
        child.expect(r"\(learned: you / lives in / Lisbon  \[(\w+)")
        fid = child.match.group(1)
        child.sendline("/new")
        child.expect_exact("(new conversation: the context is empty)")
        child.sendline("Where do I live?")
        child.expect_exact("assistant> ")
        child.expect_exact("you> ")
        assert "lisbon" in child.before.lower()
        child.sendline("/facts")
        child.expect(rf"{fid}\s+active\s+you / lives in / Lisbon")
        child.sendline("/forget nope")
        child.expect_exact("(no fact with id 'nope')")
        child.sendline("/quit")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0, child.before
