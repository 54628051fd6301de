"""The Twisted shells around the pure core: protocols that decode and call.

L{framing.FrameProtocol} feeds the transport's bytes to the codec and turns
its events into calls; L{messages.MessageProtocol} matches replies to
requests and refuses by rule; L{tracking.TrackingFactory} knows and caps a
server's connections. These are the only protocol modules that touch
``twisted.internet``; everything under ``redesdl.protocol`` and
``redesdl.machines`` stays pure.
"""
