//! `counter get|add|set|reset|watch`.

use edgeroom_client::{Counter, CounterEvent, CounterOptions, Format};
use uuid::Uuid;

use crate::args::CounterAction;
use crate::failure::{address, Failure};
use crate::{out, Link};

pub async fn run(link: &Link, action: CounterAction) -> Result<(), Failure> {
    let rest = link.rest()?;
    match action {
        CounterAction::Get { counter } => {
            let (tenant, name) = address("counter", &counter)?;
            out(rest.counter(&tenant, &name, true).await?.value)
        }
        CounterAction::Add { counter, delta } => {
            let (tenant, name) = address("counter", &counter)?;
            out(rest.counter_add(&tenant, &name, delta, Uuid::new_v4()).await?.value)
        }
        CounterAction::Set { counter, value } => {
            let (tenant, name) = address("counter", &counter)?;
            out(rest.counter_set(&tenant, &name, value, Uuid::new_v4()).await?.value)
        }
        CounterAction::Reset { counter } => {
            let (tenant, name) = address("counter", &counter)?;
            out(rest.counter_reset(&tenant, &name, Uuid::new_v4()).await?.value)
        }
        CounterAction::Watch { counter, count } => {
            let (tenant, name) = address("counter", &counter)?;
            let mut options = CounterOptions::new(&link.url, tenant, name);
            options.token = link.token.clone();
            options.format = if link.json_frames { Format::Json } else { Format::Binary };
            let (counter, mut values) = Counter::connect(options).await?;
            let mut printed = 0;
            loop {
                let next = tokio::select! {
                    next = values.recv() => next,
                    _ = tokio::signal::ctrl_c() => break,
                };
                match next {
                    Some(CounterEvent::Value(value)) => {
                        out(format!("{} (version {})", value.value, value.version))?;
                        printed += 1;
                        if count.is_some_and(|count| printed >= count) {
                            break;
                        }
                    }
                    Some(CounterEvent::Error(error)) => tracing::warn!("{error}"),
                    Some(CounterEvent::OpFailed(error)) => tracing::warn!("{error}"),
                    None => {
                        return match counter.connection_state() {
                            edgeroom_client::ConnectionState::Closed { reason } => Err(reason.into()),
                            _ => Ok(()),
                        }
                    }
                }
            }
            counter.close().await;
            Ok(())
        }
    }
}
