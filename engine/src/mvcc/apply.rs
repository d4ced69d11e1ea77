//! The applier: one committed command → changes on the [`Writer`], a response and events.
//!
//! ```text
//! ApplyInput ─► quota (put / txn with puts / lease grant) ─► command ─► ApplyOutput
//!                                                                      { revision, result, events }
//! ```
//!
//! Every request error is decided before the command writes anything, so a refused command
//! leaves the store untouched; if one ever did not, [`Writer::reject_command`] aborts the batch
//! instead of committing half a command.

use super::compact;
use super::error::{MvccResult, OpError, OpResult};
use super::leases;
use super::quota;
use super::txn;
use super::write::Writer;
use super::{ApplyInput, ApplyOutput};
use crate::request::{Command, CommandResponse, TxnResponse};

/// Applies one input inside the current batch.
pub(crate) fn apply_one(writer: &mut Writer<'_>, input: ApplyInput<'_>) -> MvccResult<ApplyOutput> {
    writer.begin_command();
    let result = match input.proposal {
        // Raft's blank and membership entries change nothing: they answer as an empty txn.
        None => Ok(CommandResponse::Txn(TxnResponse {
            succeeded: true,
            responses: Vec::new(),
        })),
        Some(proposal) => execute(writer, &proposal.command),
    };
    let result = match result {
        Ok(response) => Ok(response),
        Err(OpError::Request(error)) => Err(writer.reject_command(error)?),
        Err(OpError::Storage(error)) => return Err(error),
    };
    let events = writer.end_command();
    Ok(ApplyOutput {
        revision: writer.revision(),
        result,
        events,
    })
}

fn execute(writer: &mut Writer<'_>, command: &Command) -> OpResult<CommandResponse> {
    quota::admit(writer, command)?;
    Ok(match command {
        Command::Put(put) => {
            if put.lease != 0 && !writer.lease_exists(put.lease)? {
                return Err(crate::error::KvError::LeaseNotFound.into());
            }
            CommandResponse::Put(writer.put(put)?)
        }
        Command::DeleteRange(delete) => CommandResponse::DeleteRange(writer.delete_range(delete)?),
        Command::Txn(req) => CommandResponse::Txn(txn::execute(writer, req)?),
        Command::Compact { revision } => {
            compact::compact(writer, *revision)?;
            CommandResponse::Compact
        }
        Command::LeaseGrant { id, ttl } => {
            leases::grant(writer, *id, *ttl)?;
            CommandResponse::LeaseGrant { id: *id, ttl: *ttl }
        }
        Command::LeaseRevoke { id } => {
            leases::revoke(writer, *id)?;
            CommandResponse::LeaseRevoke
        }
        Command::Alarm { action, alarm } => {
            CommandResponse::Alarm(quota::apply_alarm(writer, *action, *alarm))
        }
    })
}
