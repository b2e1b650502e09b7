//! The control frames of a connection (PRIORITY, RST_STREAM, SETTINGS, PING, GOAWAY,
//! WINDOW_UPDATE): everything but the frames that carry requests.

use super::connection::{Connection, Phase, DRAIN_PING};
use super::error::{ErrorCode, H2Error, H2Result};
use super::frame::{self, ACK, STREAM_ID_MASK};

impl Connection {
    pub(super) fn on_priority(&mut self, sid: u32, payload: &[u8]) -> H2Result<()> {
        if sid == 0 {
            return Err(H2Error::protocol("PRIORITY on stream 0"));
        }
        if payload.len() != 5 {
            return Err(H2Error::stream(sid, ErrorCode::FrameSizeError, "PRIORITY must be 5 bytes"));
        }
        if frame::depends_on_itself(sid, payload) {
            return Err(H2Error::stream(sid, ErrorCode::ProtocolError, "stream depends on itself"));
        }
        Ok(())
    }

    pub(super) fn on_rst_stream(&mut self, sid: u32, payload: &[u8]) -> H2Result<()> {
        if sid == 0 {
            return Err(H2Error::protocol("RST_STREAM on stream 0"));
        }
        if payload.len() != 4 {
            return Err(H2Error::connection(ErrorCode::FrameSizeError, "RST_STREAM must be 4 bytes"));
        }
        if sid > self.last_sid {
            return Err(H2Error::protocol(format!("RST_STREAM on idle stream {sid}")));
        }
        if self.streams.contains_key(&sid) {
            self.drop_stream(sid);
        }
        Ok(())
    }

    pub(super) fn on_first_settings(&mut self, flags: u8, sid: u32, payload: &[u8]) -> H2Result<()> {
        if flags & ACK != 0 {
            return Err(H2Error::protocol("preface SETTINGS with ACK"));
        }
        self.phase = Phase::Normal;
        self.on_settings(flags, sid, payload)
    }

    pub(super) fn on_settings(&mut self, flags: u8, sid: u32, payload: &[u8]) -> H2Result<()> {
        if sid != 0 {
            return Err(H2Error::protocol("SETTINGS on a stream"));
        }
        if flags & ACK != 0 {
            if !payload.is_empty() {
                return Err(H2Error::connection(ErrorCode::FrameSizeError, "SETTINGS ACK with payload"));
            }
            return Ok(());
        }
        if !payload.len().is_multiple_of(6) {
            return Err(H2Error::connection(ErrorCode::FrameSizeError, "SETTINGS length not 6n"));
        }
        for setting in payload.chunks_exact(6) {
            let ident = u16::from_be_bytes([setting[0], setting[1]]);
            self.setting(ident, frame::u32_at(setting, 2))?;
        }
        frame::settings_ack(&mut self.out);
        self.unblock();
        Ok(())
    }

    fn setting(&mut self, ident: u16, value: u32) -> H2Result<()> {
        match ident {
            frame::INITIAL_WINDOW_SIZE => {
                self.sender.set_stream_window(value, self.streams.values_mut())
            }
            frame::MAX_FRAME_SIZE => self.sender.set_max_frame(value),
            frame::HEADER_TABLE_SIZE => {
                self.sender.set_peer_table_size(value);
                Ok(())
            }
            frame::ENABLE_PUSH if value > 1 => {
                Err(H2Error::protocol(format!("enable push {value}")))
            }
            _ => Ok(()),
        }
    }

    pub(super) fn on_ping(&mut self, flags: u8, sid: u32, payload: &[u8]) -> H2Result<()> {
        if payload.len() != 8 {
            return Err(H2Error::connection(ErrorCode::FrameSizeError, "PING must be 8 bytes"));
        }
        if sid != 0 {
            return Err(H2Error::protocol("PING on a stream"));
        }
        if flags & ACK == 0 {
            frame::ping(&mut self.out, ACK, payload);
        } else if payload == DRAIN_PING && self.drain_deadline.is_some() {
            self.final_goaway();
        }
        Ok(())
    }

    pub(super) fn on_goaway(&mut self, sid: u32, payload: &[u8]) -> H2Result<()> {
        if sid != 0 {
            return Err(H2Error::protocol("GOAWAY on a stream"));
        }
        if payload.len() < 8 {
            return Err(H2Error::connection(ErrorCode::FrameSizeError, "GOAWAY too short"));
        }
        // The client is leaving: finish what it already sent, then close.
        self.peer_goaway = true;
        if self.streams.is_empty() {
            self.close();
        }
        Ok(())
    }

    pub(super) fn on_window_update(&mut self, sid: u32, payload: &[u8]) -> H2Result<()> {
        if payload.len() != 4 {
            return Err(H2Error::connection(ErrorCode::FrameSizeError,
                                           "WINDOW_UPDATE must be 4 bytes"));
        }
        let increment = frame::u32_at(payload, 0) & STREAM_ID_MASK;
        if sid == 0 {
            if increment == 0 {
                return Err(H2Error::protocol("WINDOW_UPDATE of 0"));
            }
            self.sender.add_window(increment)?;
            self.unblock();
            return Ok(());
        }
        let Some(stream) = self.streams.get_mut(&sid) else {
            if sid > self.last_sid {
                return Err(H2Error::protocol("WINDOW_UPDATE on idle stream"));
            }
            return Ok(());
        };
        if increment == 0 {
            return Err(H2Error::stream(sid, ErrorCode::ProtocolError, "WINDOW_UPDATE of 0"));
        }
        self.sender.add_stream_window(stream, increment)?;
        if stream.pending.is_some() && self.sender.push(&mut self.out, stream, self.now) {
            self.end_stream(sid);
        }
        Ok(())
    }
}
