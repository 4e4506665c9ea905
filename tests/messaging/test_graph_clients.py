import threading

from messaging.graph import graph_client, graph_client_of_thread


def test_each_thread_keeps_its_own_client():
    mine = graph_client_of_thread()
    assert graph_client_of_thread() is mine
    assert mine is not graph_client()
    theirs = []
    thread = threading.Thread(target=lambda: theirs.append(graph_client_of_thread()))
    thread.start()
    thread.join()
    assert theirs[0] is not mine


def test_a_thread_s_client_follows_the_settings(settings):
    before = graph_client_of_thread()
    settings.WHATSAPP_ACCESS_TOKEN = "another-token"
    after = graph_client_of_thread()
    assert after is not before
    assert after._auth == {"Authorization": "Bearer another-token"}
    assert before._http.is_closed
