// The gonet2 contract (proto/game.proto): one bidi Stream per session.
#pragma once

namespace gatehouse::game::detail {

class Core;

/// Asks for the next Stream call; each call is served by a StreamReactor
/// (stream_reactor.cc), which asks for the next one when its call arrives.
void request_stream(Core& core);

}  // namespace gatehouse::game::detail
