"""Chat history in SQLite: per folder, atomic turns, cancelled turns kept but not prompted."""

import multiprocessing
import sqlite3

from lsp_server.history import HistoryStore, database_path


def test_turns_survive_reopening_and_keep_their_order(tmp_path):
    store = HistoryStore(tmp_path, "file:///ws")
    store.append_turn("hi", "hello", "stop")
    store.append_turn("again", "sure", "length")
    reopened = HistoryStore(tmp_path, "file:///ws")
    turns = reopened.turns()
    assert [(t.role, t.content, t.finish_reason) for t in turns] == [
        ("user", "hi", None), ("assistant", "hello", "stop"), ("user", "again", None), ("assistant", "sure", "length")]
    assert turns[0].time <= turns[1].time <= turns[3].time


def test_folders_are_separate_databases(tmp_path):
    HistoryStore(tmp_path, "file:///a").append_turn("a", "A", "stop")
    assert HistoryStore(tmp_path, "file:///b").turns() == []
    assert database_path(tmp_path, "file:///a") != database_path(tmp_path, "file:///b")
    assert database_path(tmp_path, None).parent == tmp_path / "history"


def test_cancelled_turns_are_recorded_but_left_out_of_prompts(tmp_path):
    store = HistoryStore(tmp_path, None)
    store.append_turn("q1", "a1", "stop")
    store.append_turn("q2", "partial", "cancelled")
    assert store.turns()[-1].finish_reason == "cancelled"
    assert store.prompt_messages() == [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"}]


def test_clear_removes_every_turn(tmp_path):
    store = HistoryStore(tmp_path, "file:///ws")
    store.append_turn("q", "a", "stop")
    assert store.clear() == 2
    assert store.turns() == []


def test_database_is_in_wal_mode(tmp_path):
    store = HistoryStore(tmp_path, "file:///ws")
    mode = sqlite3.connect(store.path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def _writer(data_dir, tag, n):
    store = HistoryStore(data_dir, "file:///shared")
    for i in range(n):
        store.append_turn(f"{tag}-q{i}", f"{tag}-a{i}", "stop")


def test_two_processes_writing_the_same_workspace_lose_nothing(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(tmp_path, tag, 25)) for tag in ("x", "y")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    turns = HistoryStore(tmp_path, "file:///shared").turns()
    assert len(turns) == 100
    # each exchange stays contiguous: a user row is always followed by its own reply
    for user, reply in zip(turns[::2], turns[1::2]):
        assert user.role == "user" and reply.role == "assistant"
        assert reply.content == user.content.replace("-q", "-a")
