# Types of the C module _fastpath.c (see its comments for what each returns).

MODE_TLS12_GCM: int
MODE_TLS12_CHACHA: int
MODE_TLS13: int

class Aead:
    def __init__(self, key: bytes, chacha: bool) -> None: ...

def tun_to_dtls(tun_fd: int, udp_fd: int, aead: object, chacha: bool, iv: bytes,
                epoch_seq: int, batch: int, vnet: bool,
                gso: bool) -> tuple[int, int, int, int, int, bool, int, int]: ...
def dtls_to_tun(udp_fd: int, tun_fd: int, aead: object, chacha: bool, iv: bytes, epoch: int,
                top: int, bits: int,
                vnet: bool) -> tuple[int, int, int, int, int, int, int, list[bytes], int]: ...
def tun_to_tls(tun_fd: int, aead: object, mode: int, iv: bytes, seq: int, batch: int,
               vnet: bool) -> tuple[bytes, int, int, int, int, int]: ...
def tls_to_tun(data: bytes, tun_fd: int, aead: object, mode: int, iv: bytes, seq: int,
               vnet: bool) -> tuple[int, int, int, int, int, int]: ...
def write_tun(tun_fd: int, packets: list[bytes], vnet: bool) -> int: ...
