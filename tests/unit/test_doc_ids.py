import pytest

from collab.protocol.doc_ids import validate_doc_id
from collab.protocol.wire import CloseCode, ProtocolError


@pytest.mark.parametrize("doc_id", ["a", "notes/today", "A-z_0.9~x", "x" * 255, "a/b/c", "..a"])
def test_valid_ids(doc_id: str) -> None:
    assert validate_doc_id(doc_id) == doc_id


@pytest.mark.parametrize(
    "doc_id",
    ["", "x" * 256, "a b", "a//b", "/a", "a/", ".", "..", "a/../b", "a/./b", "é", "a?b", "a%2Fb"],
)
def test_invalid_ids_close_with_4400(doc_id: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        validate_doc_id(doc_id)
    assert caught.value.code == CloseCode.BAD_REQUEST
