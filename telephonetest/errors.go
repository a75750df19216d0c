package telephonetest

import "errors"

// Errors returned by the Server's methods. Match them with errors.Is.
var (
	// ErrInvalidPathID is returned by Mint for a path id that is not a
	// canonical lower-case UUID (as NewPathID returns).
	ErrInvalidPathID = errors.New("telephonetest: path id is not a canonical UUID")
	// ErrNoTelephone is returned by Push when no telephone has joined the path.
	ErrNoTelephone = errors.New("telephonetest: no telephone joined the path")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("telephonetest: server closed")
	// ErrUnknownToken is returned for a token id this server never minted.
	ErrUnknownToken = errors.New("telephonetest: unknown token id")
	// ErrUnknownSocket is returned by DropSocket for an id that names no live
	// socket.
	ErrUnknownSocket = errors.New("telephonetest: no live socket with this id")
)
