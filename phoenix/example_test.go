package phoenix_test

import (
	"fmt"

	"github.com/verastack/telephone/phoenix"
)

func ExampleEncodeText() {
	frame, err := phoenix.EncodeText(phoenix.Message{Ref: "2", Topic: phoenix.TopicPhoenix, Event: phoenix.EventHeartbeat})
	if err != nil {
		panic(err)
	}
	fmt.Println(string(frame))
	// Output: [null,"2","phoenix","heartbeat",{}]
}

func ExampleDecodeText() {
	m, err := phoenix.DecodeText([]byte(`["1",null,"telephone:p","heartbeat_ack",{"ts":1700000000}]`))
	if err != nil {
		panic(err)
	}
	fmt.Printf("join_ref=%q ref=%q topic=%s event=%s payload=%s\n", m.JoinRef, m.Ref, m.Topic, m.Event, m.Payload)
	// Output: join_ref="1" ref="" topic=telephone:p event=heartbeat_ack payload={"ts":1700000000}
}

func ExampleDecodeBinary() {
	// kind 1 (reply); the lengths of join_ref, ref, topic and status; the four fields; the payload.
	frame := append([]byte{1, 1, 1, 6, 2}, "17room:1ok\xca\xfe"...)
	m, kind, err := phoenix.DecodeBinary(frame)
	if err != nil {
		panic(err)
	}
	fmt.Printf("%s %s ref=%s status=%s payload=% x\n", kind, m.Event, m.Ref, m.Status, m.Payload)
	// Output: reply phx_reply ref=7 status=ok payload=ca fe
}
