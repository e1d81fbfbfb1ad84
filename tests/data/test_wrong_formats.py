"""A file of another format is refused before anything is written, by a DataError that names the
file, the line and what was expected, and the importer (with its options) that reads it."""

import pytest
from byo_files import (
    TABLE_HEADER,
    click_table_rows,
    diginetica_views,
    write_delimited,
    write_spec,
    yoochoose_clicks,
)

from distrec.cli import main
from distrec.data.importers import IMPORTERS
from distrec.data.importers.interactions import import_interactions
from distrec.data.importers.sessions import import_sessions
from distrec.data.importers.table import import_table
from distrec.errors import DataError


def nothing_written(out) -> bool:
    return not out.exists() or not any(p.is_file() for p in out.rglob("*"))


def test_a_yoochoose_click_log_is_not_imported_as_sessions(tmp_path):
    src = yoochoose_clicks(tmp_path / "yoochoose-clicks.dat")
    with pytest.raises(DataError) as err:
        import_sessions(str(src), str(tmp_path / "out"))
    message = str(err.value)
    assert message.startswith(f"{src}: not a session file: line 1 has a date/time in field 2 ('2014-04-07T")
    assert "one whole sequence per line" in message
    assert f"distrec data import interactions {src} OUT --columns 0,2,1" in message
    assert nothing_written(tmp_path / "out")


def test_a_diginetica_log_is_refused_with_the_interactions_call_that_reads_it(tmp_path, capsys):
    src = diginetica_views(tmp_path / "train-item-views.csv")
    assert main(["data", "import", "sessions", str(src), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "not a session file: its fields are separated by ';' (semicolon), not commas" in err
    assert "line 1 is a header naming columns (sessionId;userId;itemId;timeframe;eventdate)" in err
    assert f"distrec data import interactions {src} OUT --delimiter ';' --columns sessionId,itemId,timeframe" in err
    assert nothing_written(tmp_path / "out")


@pytest.mark.parametrize("text, why", [
    ("session_id,item_id,timestamp\n1,5,100\n1,6,101\n2,5,102\n", "line 1 is a header naming columns"),
    ("1,5,1396868949\n1,6,1396868950\n1,9,1396868951\n2,5,1396868990\n2,7,1396868999\n3,1,1396869999\n",
     "every line has 3 fields and field 1 repeats on consecutive lines"),
    ("7\t8\t9\n1\t2\n3\t4\t5\n", "its fields are separated by '\\t' (tab), not commas"),
])
def test_other_event_logs_are_refused_as_sessions(tmp_path, text, why):
    src = tmp_path / "log.csv"
    src.write_text(text)
    with pytest.raises(DataError, match="not a session file") as err:
        import_sessions(str(src), str(tmp_path / "out"))
    assert why in str(err.value)
    assert "distrec data import interactions" in str(err.value)


def test_a_click_table_is_not_imported_as_sessions(tmp_path):
    src = write_delimited(tmp_path / "clicks.csv", click_table_rows(20))
    with pytest.raises(DataError, match=r"not a session file: line 1 is a header with label column\(s\) \['click', "
                                        r"'conversion'\], so it is a click table.* distrec data import table "):
        import_sessions(str(src), str(tmp_path / "out"))


def test_a_session_file_is_not_imported_as_interactions(tmp_path):
    src = tmp_path / "sessions.csv"
    src.write_text("1,2,3,4\n5,6\n7,8,9\n")
    with pytest.raises(DataError) as err:
        import_interactions(str(src), str(tmp_path / "out"), columns="0,1")
    assert str(err.value).startswith(f"{src} line 2: 2 ','-separated fields, expected 4")
    assert f"distrec data import sessions {src} OUT" in str(err.value)


def test_interactions_without_a_header_need_their_columns_named(tmp_path):
    src = yoochoose_clicks(tmp_path / "clicks.dat")
    with pytest.raises(DataError, match=r"cannot tell which columns hold the session, item and time \(no header "
                                        r"and 4 fields\); say so with --columns 0,2,1"):
        import_interactions(str(src), str(tmp_path / "out"))
    with pytest.raises(DataError, match="the item column 'f1' holds dates/times"):
        import_interactions(str(src), str(tmp_path / "out"), columns=(0, 1, 2))
    with pytest.raises(DataError, match=r"no column 'item'; the header has \['sessionId', 'userId'"):
        import_interactions(str(diginetica_views(tmp_path / "d.csv")), str(tmp_path / "out"),
                            columns="sessionId,item,timeframe")


def test_a_short_line_deep_in_a_file_names_its_line(tmp_path):
    rows = click_table_rows(3000)
    lines = [",".join(r) for r in rows]
    lines[2500] = ",".join(rows[2500][:-1])  # a field short
    src = tmp_path / "t.csv"
    src.write_text("\n".join([",".join(TABLE_HEADER), *lines]) + "\n")
    with pytest.raises(DataError, match=r"t.csv line 2502: 9 ','-separated fields, expected 10 as in the first "
                                        r"line \(user_id, item_id,"):
        import_table(str(src), str(tmp_path / "out"), spec=str(write_spec(tmp_path / "spec.yaml")))
    assert nothing_written(tmp_path / "out")
    log = tmp_path / "log.csv"
    log.write_text("session,item,time\n" + "".join(f"{i // 3},{i},{i}\n" for i in range(900)) + "7,8\n")
    with pytest.raises(DataError, match=r"log.csv line 902: 2 ','-separated fields, expected 3"):
        import_interactions(str(log), str(tmp_path / "out"))


def test_an_unreadable_time_names_its_line(tmp_path):
    src = tmp_path / "log.csv"
    src.write_text("session,item,time\n1,5,100\n1,6,yesterday\n")
    with pytest.raises(DataError, match=r"log.csv: column 'time' on line 3 has 'yesterday'; expected a number or "
                                        "an ISO date/time"):
        import_interactions(str(src), str(tmp_path / "out"))
    assert nothing_written(tmp_path / "out")


def test_a_table_without_the_specs_columns_is_refused(tmp_path):
    spec = write_spec(tmp_path / "spec.yaml")
    log = yoochoose_clicks(tmp_path / "clicks.csv")
    with pytest.raises(DataError) as err:
        import_table(str(log), str(tmp_path / "out"), spec=str(spec))
    assert f"{log}: no column(s) ['user_id', 'item_id'" in str(err.value)
    assert "it looks like an interaction log (line 1 has a date/time in field 2 ('2014-04-07T" in str(err.value)
    assert f"read by: distrec data import interactions {log} OUT --columns 0,2,1" in str(err.value)
    semicolons = write_delimited(tmp_path / "t.csv", click_table_rows(20), delimiter=";")
    import_table(str(semicolons), str(tmp_path / "detected"), spec=str(spec))  # the delimiter is detected
    comma = write_spec(tmp_path / "comma.yaml", extra='delimiter: ","\n')
    with pytest.raises(DataError, match=r"single comma-separated field: is the delimiter ';'\?"):
        import_table(str(semicolons), str(tmp_path / "out"), spec=str(comma))
    assert nothing_written(tmp_path / "out")


@pytest.mark.parametrize("column, value, expected", [
    ("click", "2", r"label 'click' on line 7 is 2.0; expected a click/conversion label in \[0, 1\]"),
    ("conversion", "", r"label 'conversion' on line 7 is empty"),
    ("price", "cheap", r"column 'price' on line 7 has value 'cheap'; expected a number"),
    ("ts", "soon", r"column 'ts' on line 7 has 'soon'; expected a number or an ISO date/time"),
])
def test_a_bad_value_in_a_table_names_its_line_and_nothing_is_written(tmp_path, column, value, expected):
    rows = click_table_rows(300)
    rows[5][["user_id", "item_id", "cate_id", "city", "price", "age", "hist_items", "click", "conversion",
             "ts"].index(column)] = value
    src = write_delimited(tmp_path / "t.csv", rows)
    with pytest.raises(DataError, match=expected):
        import_table(str(src), str(tmp_path / "out"), spec=str(write_spec(tmp_path / "spec.yaml")))
    assert nothing_written(tmp_path / "out")


def test_every_text_importer_is_registered():
    assert {"sessions", "interactions", "table"} <= set(IMPORTERS)
