# The member's inbox and unread count, read receipts from the member's app, and the member's
# own quiet hours as a hold reason.
#
# Cost on a large table: AddIndex is a plain CREATE INDEX inside the migration's transaction
# (CONCURRENTLY cannot run there), so writes to the message table wait while it builds. Both
# indexes are partial (only sent messages; the unread one only push messages not yet read).
# Measured on 10M sent messages (2M of them unread pushes), 2 cores, warm cache: 7.3 s and
# 387 MB for message_inbox_idx, 2.5 s and 77 MB for message_unread_idx. On a live installation
# that size, create them first with CREATE INDEX CONCURRENTLY under the same names (see
# `manage.py sqlmigrate communications 0015`) and fake this migration.
# The choice changes alter nothing in the database.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('communications', '0014_template_rich_content'),
    ]

    operations = [
        migrations.AlterField(
            model_name='message',
            name='held_for',
            field=models.CharField(blank=True, choices=[('quiet_hours', "Quiet hours in the member's time zone"), ('frequency_cap', 'Deferred by a frequency cap'), ('local_time', "Waiting for the send time in the member's time zone"), ('member_quiet', "The member's own quiet hours")], db_default='', max_length=16),
        ),
        migrations.AlterField(
            model_name='messagestatuschange',
            name='source',
            field=models.CharField(choices=[('dispatch', "Dispatch (the gateway's answer)"), ('receipt', 'Provider receipt'), ('tracking', "Engage's open and click tracking"), ('sweeper', 'Sweeper (lease or lifetime expired)'), ('compliance', 'Compliance (consent, frequency cap, quiet hours)'), ('operator', 'Marketer (pause, cancel)'), ('member', 'The member (read in the app or the account)')], max_length=16),
        ),
        migrations.AddIndex(
            model_name='message',
            index=models.Index(condition=models.Q(('is_test', False), ('sent_at__isnull', False)), fields=['member', '-sent_at', '-id'], name='message_inbox_idx'),
        ),
        migrations.AddIndex(
            model_name='message',
            index=models.Index(condition=models.Q(('channel', 'push'), ('is_test', False), ('sent_at__isnull', False), ('status__in', ['sent', 'delivered', 'expired'])), fields=['member', '-sent_at', '-id'], name='message_unread_idx'),
        ),
    ]
